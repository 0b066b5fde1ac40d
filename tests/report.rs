//! The compliance report an auditor opens: one self-contained HTML file,
//! rendered by a real browser with no console errors, whose figures equal
//! the clocks the node itself kept.

mod common;

use std::time::Duration;

use common::{Cluster, FAST_NORMS, hotline_json, notice};
use hotline::proto::{CommCheckRequest, Deadline, ReasonCode, RespondRequest, ResponseStatus};

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
    // CHL promises a further answer within the hour, and gives it: declined, with its reason.
    let promised_by = hotline::clock::to_proto(c.clock.now() + Duration::from_secs(3600));
    for (status, reason, promised_by) in [
        (
            ResponseStatus::Investigating,
            ReasonCode::Unspecified,
            Some(promised_by),
        ),
        (ResponseStatus::Declined, ReasonCode::OutsideJurisdiction, None),
    ] {
        c.operator(1)
            .respond(RespondRequest {
                notice_id: id.clone(),
                status: status as i32,
                text: "on it".into(),
                reason: reason as i32,
                promised_by,
            })
            .await
            .unwrap();
    }
    c.operator(0).comm_check(CommCheckRequest::default()).await.unwrap();
    // A human check CHL's duty officer answers; ARG's is left to run out.
    let human = c
        .operator(0)
        .comm_check(CommCheckRequest {
            party: "CHL".into(),
            human: true,
        })
        .await
        .unwrap()
        .into_inner()
        .notice_ids;
    c.until_held(1, &human[0]).await;
    c.respond(1, &human[0], ResponseStatus::Acknowledged, "here").await;
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
        let norms: &[&str] = match kind {
            Deadline::Receipt => &["receipt"],
            Deadline::Acknowledge => &["acknowledgement (high)"],
            Deadline::Response => &["response (high)"],
            Deadline::Promise => &["promised answer"],
            // The node counts one clock; the report shows machine and human answers apart.
            Deadline::CommCheckAnswer => &["communication check", "human communication check"],
            _ => continue,
        };
        let sum = |which: &str| {
            norms
                .iter()
                .map(|norm| figure(&rendered.dom, &party, norm, which).unwrap_or(0))
                .sum::<u64>()
        };
        assert_eq!(sum("met"), met, "{party} {norms:?} met");
        assert_eq!(sum("missed"), missed, "{party} {norms:?} missed");
        compared += 1;
    }
    assert!(
        compared >= 9,
        "receipts, acknowledgements, responses and checks of both peers, CHL's promise: {compared}"
    );
    assert_eq!(figure(&rendered.dom, "ARG", "response (high)", "missed"), Some(1));
    assert_eq!(
        figure(&rendered.dom, "ARG", "acknowledgement (high)", "missed"),
        Some(1)
    );
    assert_eq!(figure(&rendered.dom, "CHL", "promised answer", "met"), Some(1));
    assert_eq!(
        figure(&rendered.dom, "CHL", "human communication check", "met"),
        Some(1)
    );
    assert_eq!(figure(&rendered.dom, "ARG", "human communication check", "owed"), None);
    // The reason CHL gave, counted and in the thread's timeline.
    assert!(
        rendered
            .dom
            .contains(r#"data-reason="CHL declined outside-jurisdiction""#)
            && rendered.dom.contains("DECLINED (reason: outside-jurisdiction)"),
        "the reason is shown"
    );
    // The charts: a date axis, the agreed limits drawn, checks by nodes and by people apart.
    let today = hotline::clock::now();
    let axis_date = format!(
        "UTC, {}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    assert!(
        rendered.dom.contains(&axis_date),
        "dates on the time axis ({axis_date})"
    );
    assert!(rendered.dom.contains("limit (high): "), "the response limit is drawn");
    assert!(rendered.dom.contains("Communication checks answered by a person"));
}
