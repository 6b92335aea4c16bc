// The dashboard's parsers, without a browser: server-sent events as the wire splits them,
// and Prometheus text into per-tool calls, errors and latency quantiles.
// Run: node --test tests/dashboard/

import assert from "node:assert/strict";
import { test } from "node:test";
import { sseParser } from "../../src/ops/dashboard/api.js";
import { parseMetrics, perTool } from "../../src/ops/dashboard/charts.js";

function events(chunks) {
  const seen = [];
  const parser = sseParser((e) => seen.push(e));
  for (const chunk of chunks) parser.push(chunk);
  parser.end();
  return seen;
}

test("events split anywhere, with CRLF, comments and multi-line data", () => {
  const wire = ': keep-alive\r\nevent: call_started\r\ndata: {"tool":"a"}\r\n\r\nevent: text\ndata: line one\ndata: line two\n\ndata: {"x":1}\n\nevent: cut\ndata: never ended';
  for (const size of [1, 2, 3, 7, wire.length]) {
    const chunks = [];
    for (let i = 0; i < wire.length; i += size) chunks.push(wire.slice(i, i + size));
    assert.deepEqual(
      events(chunks).map(({ event, data }) => [event, data]),
      [
        ["call_started", { tool: "a" }],
        ["text", "line one\nline two"],
        ["message", { x: 1 }],
      ],
      `chunks of ${size}`,
    );
  }
});

test("metrics become calls, errors and quantiles per tool", () => {
  const text = `# TYPE plugboard_tool_calls_total counter
plugboard_tool_calls_total{plugin="testkit",tool="testkit_echo",face="rest",outcome="ok"} 3
plugboard_tool_calls_total{plugin="testkit",tool="testkit_echo",face="dashboard",outcome="ok"} 5
plugboard_tool_calls_total{plugin="testkit",tool="testkit_echo",face="dashboard",outcome="invalid_arguments"} 2
plugboard_tool_calls_total{plugin="",tool="",face="rest",outcome="unknown_tool"} 1
plugboard_tool_call_duration_seconds_bucket{plugin="testkit",tool="testkit_echo",face="rest",le="0.001"} 2
plugboard_tool_call_duration_seconds_bucket{plugin="testkit",tool="testkit_echo",face="rest",le="0.01"} 3
plugboard_tool_call_duration_seconds_bucket{plugin="testkit",tool="testkit_echo",face="rest",le="+Inf"} 3
plugboard_tool_call_duration_seconds_bucket{plugin="testkit",tool="testkit_echo",face="dashboard",le="0.001"} 6
plugboard_tool_call_duration_seconds_bucket{plugin="testkit",tool="testkit_echo",face="dashboard",le="0.01"} 7
plugboard_tool_call_duration_seconds_bucket{plugin="testkit",tool="testkit_echo",face="dashboard",le="+Inf"} 7
plugboard_tool_call_duration_seconds_sum{plugin="testkit",tool="testkit_echo",face="rest"} 0.006
plugboard_tool_call_duration_seconds_count{plugin="testkit",tool="testkit_echo",face="rest"} 3
plugboard_tool_call_duration_seconds_sum{plugin="testkit",tool="testkit_echo",face="dashboard"} 0.004
plugboard_tool_call_duration_seconds_count{plugin="testkit",tool="testkit_echo",face="dashboard"} 7
`;
  const [echo, unknown] = perTool(parseMetrics(text));
  assert.equal(echo.tool, "testkit_echo");
  assert.equal(echo.calls, 10);
  assert.equal(echo.errors, 2);
  assert.equal(echo.mean, 1); // 10 ms over 10 calls
  assert.equal(echo.p50, 0.625); // rank 5 of the 8 in the first bucket (0..1 ms)
  assert.ok(Math.abs(echo.p95 - 7.75) < 1e-9, `${echo.p95}`); // rank 9.5: 3/4 into 1..10 ms
  assert.deepEqual([unknown.tool, unknown.calls, unknown.errors], ["(unknown tool)", 1, 1]);
});
