//! `plugboard check --online` for the agents plugin: every available provider's model list,
//! read with its own key and base URL, all at once. A provider passes when the list is read
//! and offers the configured model; otherwise its finding says what to fix — the key, the
//! model name, or the way to the server.

use std::sync::Arc;

use crate::{
    agents::{
        Agent, Agents, key_variable,
        models::{ListError, ModelList},
    },
    plugin::{Finding, verify::some_of},
};

/// How many offered models a "not offered" finding names.
const SHOWN: usize = 8;

pub async fn verify(agents: &Agents) -> Vec<Finding> {
    let available: Vec<Arc<dyn Agent>> = agents
        .available()
        .iter()
        .filter_map(|name| agents.get(name).cloned())
        .collect();
    let checks = available.iter().map(|agent| async move {
        let listed = agent.list_models().await;
        finding(agent.provider(), agent.model(), listed)
    });
    futures::future::join_all(checks).await
}

fn finding(provider: &str, model: &str, listed: Result<ModelList, ListError>) -> Finding {
    let fail = |detail: String| Finding::failed(provider, detail);
    match listed {
        Ok(list) => match (list.offers(model), list) {
            (Some(true), _) => Finding::ok(provider, format!("key accepted; {model} is offered")),
            (_, ModelList::Offered(mut offered)) => {
                offered.sort();
                let upper = provider.to_uppercase().replace('-', "_");
                let offered = if offered.is_empty() {
                    "none".to_owned()
                } else {
                    some_of(&offered, SHOWN)
                };
                fail(format!(
                    "model {model} not offered (offered: {offered}): set {upper}_MODEL or \
                     settings.providers.{provider}.model to one it offers"
                ))
            }
            (_, ModelList::Unlisted) => Finding::ok(
                provider,
                "the server lists no models (key and model not checked; a base URL that lacks \
                 its /v1 answers so too)",
            ),
        },
        Err(ListError::KeyRejected { status: 403 }) => fail(format!(
            "key rejected (HTTP 403: revoked, or not allowed for this project or region): check {}",
            key_variable(provider)
        )),
        Err(ListError::KeyRejected { .. }) => fail(format!(
            "key rejected (revoked or mistyped): check {}",
            key_variable(provider)
        )),
        Err(ListError::Unreachable { host, detail }) => {
            fail(format!("cannot reach {host} ({detail})"))
        }
        Err(ListError::Failed(error)) => fail(format!("reading the model list: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_names_what_is_offered() {
        let list = ModelList::Offered((1..=10).map(|i| format!("m{i:02}")).collect());
        let found = finding("openai", "gpt-x", Ok(list));
        assert_eq!(
            found,
            Finding::failed(
                "openai",
                "model gpt-x not offered (offered: m01, m02, m03, m04, m05, m06, m07, m08, … \
                 (10 in all)): set OPENAI_MODEL or settings.providers.openai.model to one it \
                 offers"
            )
        );
    }
}
