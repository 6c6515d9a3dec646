//! Benchmark: an MCP `tools/call` of `list_tasks` (with 20 tasks stored)
//! through the real binary, with rmcp's client over loopback: one client,
//! calls back to back; p50 and p99 of the round trip, and `tools/list`
//! beside it as the baseline without a plugin call.

use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, object};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

mod support;
use support::quantile;

const WARMUP: usize = 200;
const CALLS: usize = 3_000;

fn main() {
    support::block_on(async {
        let server = support::server(&[]).await;
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", server.base))
                .auth_header(support::token("bench")),
        );
        let client = ().serve(transport).await.unwrap();
        for n in 0..20 {
            let args = object(json!({ "title": format!("task {n}") }));
            client
                .call_tool(CallToolRequestParams::new("add_task").with_arguments(args))
                .await
                .unwrap();
        }

        let mut list_calls = Vec::with_capacity(CALLS);
        let mut list_tools = Vec::with_capacity(CALLS);
        for round in 0..WARMUP + CALLS {
            let started = Instant::now();
            let args = object(json!({ "status": "all" }));
            let result = client
                .call_tool(CallToolRequestParams::new("list_tasks").with_arguments(args))
                .await
                .unwrap();
            assert_eq!(result.is_error, Some(false));
            let call = started.elapsed();
            let started = Instant::now();
            client.list_tools(None).await.unwrap();
            let list = started.elapsed();
            if round >= WARMUP {
                list_calls.push(call);
                list_tools.push(list);
            }
        }
        list_calls.sort();
        list_tools.sort();
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        println!("MCP round trips on loopback, rmcp client, {CALLS} each after {WARMUP} warm-up\n");
        println!("| request | p50 | p99 |");
        println!("|---|---|---|");
        println!(
            "| tools/call list_tasks (20 tasks) | {} | {} |",
            ms(quantile(&list_calls, 0.5)),
            ms(quantile(&list_calls, 0.99))
        );
        println!(
            "| tools/list (baseline, no plugin call) | {} | {} |",
            ms(quantile(&list_tools, 0.5)),
            ms(quantile(&list_tools, 0.99))
        );
        client.cancel().await.unwrap();
    });
}
