//! The plan and the report as a person reads them (the structured content has it all).

use std::fmt::Write;

use super::engine::{Outcome, Planned};

/// Records listed by name in the text; the structured content lists all.
const LISTED: usize = 50;

pub fn render(out: &Outcome) -> String {
    let mut t = String::new();
    let verb = |plan: &str, done: &str| {
        if out.applied {
            done.to_owned()
        } else {
            plan.to_owned()
        }
    };
    if out.applied {
        let _ = writeln!(
            t,
            "Organized {} into {} ({}).",
            show_folder(&out.folder),
            out.table,
            out.base
        );
    } else {
        let _ = writeln!(
            t,
            "Plan for organizing {} into {} ({}) — a dry run: nothing was written. Call again \
             with apply: true to carry it out.",
            show_folder(&out.folder),
            out.table,
            out.base
        );
    }
    let _ = writeln!(
        t,
        "\nScanned {} files · {} documents · {} {} · {} {} · {} unchanged · {} failed · {} skipped",
        out.documents + out.skipped_total,
        out.documents,
        out.create.len(),
        verb("to create", "created"),
        out.update.len(),
        verb("to update", "updated"),
        out.unchanged,
        out.failed.len(),
        out.skipped_total,
    );
    if !out.categories.is_empty() {
        let cats: Vec<String> = out
            .categories
            .iter()
            .map(|c| format!("{} ({})", c.name, c.records))
            .collect();
        let _ = writeln!(t, "Categories ({}): {}", out.taxonomy, cats.join(", "));
    }
    let judged = if out.links_judged > 0 {
        format!(
            "; the model chose the links of {} changed document(s)",
            out.links_judged
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        t,
        "Tags: {} distinct · related-document links: {} ({} records {}{judged})",
        out.tags,
        out.links,
        out.link_updates,
        verb("to relink", "relinked")
    );
    if !out.fields_to_create.is_empty() {
        let names: Vec<String> = out
            .fields_to_create
            .iter()
            .map(|p| format!("{} ({})", p.name, p.kind))
            .collect();
        let _ = writeln!(
            t,
            "Fields {}: {}",
            verb("to create", "created"),
            names.join(", ")
        );
    }
    for (field, options) in &out.options_to_create {
        let shown: Vec<&str> = options.iter().take(20).map(String::as_str).collect();
        let more = options.len().saturating_sub(shown.len());
        let _ = writeln!(
            t,
            "New {field} options: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    for m in &out.models {
        let cost = m
            .cost_usd
            .map(|c| format!(", ≈ ${c:.4}"))
            .unwrap_or_default();
        let _ = writeln!(
            t,
            "Model: {} {} — {} requests, {} input + {} output tokens{}{}",
            m.provider,
            m.model,
            m.requests,
            m.input_tokens,
            m.output_tokens,
            if m.estimated_tokens {
                " (estimated)"
            } else {
                ""
            },
            cost
        );
    }
    if out.models.is_empty() {
        let _ = writeln!(t, "Model: no request needed");
    }
    let a = &out.airtable_requests;
    if out.applied {
        let _ = writeln!(t, "Airtable: {} reads, {} writes", a.reads, a.writes);
    } else {
        let _ = writeln!(
            t,
            "Airtable: {} reads so far; apply makes {} writes (about {:.1} s at 5 requests/s)",
            a.reads,
            a.planned_writes,
            a.planned_writes as f64 / 5.0
        );
    }
    let _ = writeln!(t, "Took {:.1} s", out.wall_ms as f64 / 1000.0);

    list(&mut t, &verb("To create", "Created"), &out.create, false);
    list(&mut t, &verb("To update", "Updated"), &out.update, true);
    if !out.failed.is_empty() {
        let _ = writeln!(t, "\nFailed (run again to retry them):");
        for p in out.failed.iter().take(LISTED) {
            let _ = writeln!(t, "- {}: {}", p.path, p.reason);
        }
    }
    if !out.skipped.is_empty() {
        let _ = writeln!(t, "\nSkipped:");
        for p in out.skipped.iter().take(LISTED) {
            let _ = writeln!(t, "- {}: {}", p.path, p.reason);
        }
    }
    for w in &out.warnings {
        let _ = writeln!(t, "\nWarning: {w}");
    }
    t
}

fn show_folder(folder: &str) -> String {
    if folder.is_empty() || folder == "." {
        "the root folder".into()
    } else {
        folder.to_owned()
    }
}

fn list(t: &mut String, heading: &str, records: &[Planned], changes: bool) {
    if records.is_empty() {
        return;
    }
    let _ = writeln!(t, "\n{heading}:");
    for p in records.iter().take(LISTED) {
        let _ = writeln!(t, "- {} — {} [{}]", p.path, p.category, p.tags.join(", "));
        if changes {
            let names: Vec<&str> = p.changes.keys().map(String::as_str).collect();
            let _ = writeln!(t, "  changes: {}", names.join(", "));
        } else {
            let _ = writeln!(t, "  {}", p.summary);
        }
    }
    if records.len() > LISTED {
        let _ = writeln!(
            t,
            "… and {} more (see the structured result)",
            records.len() - LISTED
        );
    }
}
