//! The compliance report an auditor opens: one self-contained HTML file,
//! rendered by a real browser with no console errors, whose figures equal
//! the clocks the node itself kept.

mod common;

use std::time::Duration;

use common::{Cluster, FAST_NORMS, hotline_json, notice};
use hotline::proto::{CommCheckRequest, Deadline, ResponseStatus};

/// The figure `which` (owed, met, missed) of the row for `party` and `norm` in the rendered DOM.
fn figure(dom: &str, party: &str, norm: &str, which: &str) -> Option<u64> {
    let row = dom.find(&format!("data-party=\"{party}\" data-norm=\"{norm}\""))?;
    let rest = &dom[row..];
    let end = rest.find("</tr>")?;
    let cell = rest[..end].find(&format!("data-figure=\"{which}\">"))?;
    let value = &rest[cell..end];
    let value = &value[value.find('>')? + 1..];
    value[..value.find('<')?].trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_in_chromium_with_no_console_errors_and_its_figures_match_the_clocks() {
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    // CHL answers; ARG lets its acknowledgement and response clocks run out; both answer a check.
    let id = c.send(0, notice(&["CHL", "ARG"], "Wiper at the grid")).await;
    c.until_held(1, &id).await;
    c.respond(1, &id, ResponseStatus::Investigating, "on it").await;
    c.operator(0).comm_check(CommCheckRequest::default()).await.unwrap();
    c.eventually_advancing(
        20,
        Duration::from_secs(1),
        "ARG's response missed, every clock ended",
        |c| {
            let compliance = c.node(0).read(hotline::state::compliance).unwrap();
            let running = c.node(0).read(hotline::state::running_deadline_count).unwrap();
            running == 0
                && compliance
                    .iter()
                    .any(|k| k.0 == "ARG" && k.1 == Deadline::Response && k.3 == 1)
        },
    )
    .await;

    let page = c.dir.path().join("report.html");
    let data = c.configs[0].data.to_string_lossy().into_owned();
    let (ok, v) = hotline_json(&["report", "--data", &data, "--out", &page.to_string_lossy()]);
    assert!(ok, "{v}");
    assert_eq!(v["valid"], true);
    let html = std::fs::read_to_string(&page).unwrap();
    for fetching in ["<script", "<link", " src=", "@import", "url("] {
        assert!(
            !html.contains(fetching),
            "the page fetches nothing and runs nothing: {fetching}"
        );
    }

    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let Some(rendered) = common::chromium(&page, &screenshot) else {
        return;
    };
    assert!(rendered.console.is_empty(), "console: {:?}", rendered.console);
    assert!(rendered.dom.contains("<svg"), "the charts are inline SVG");

    // Every clock the node counted, as the report shows it: met and missed alike.
    let compliance = c.node(0).read(hotline::state::compliance).unwrap();
    let mut compared = 0;
    for (party, kind, met, missed) in compliance {
        let norm = match kind {
            Deadline::Receipt => "receipt",
            Deadline::Response => "response (high)",
            Deadline::CommCheckAnswer => "communication check",
            _ => continue,
        };
        assert_eq!(
            figure(&rendered.dom, &party, norm, "met"),
            Some(met),
            "{party} {norm} met"
        );
        assert_eq!(
            figure(&rendered.dom, &party, norm, "missed"),
            Some(missed),
            "{party} {norm} missed"
        );
        compared += 1;
    }
    assert!(
        compared >= 6,
        "receipts, responses and checks of both peers: {compared}"
    );
    assert_eq!(figure(&rendered.dom, "ARG", "response (high)", "missed"), Some(1));
}
