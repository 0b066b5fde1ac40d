//! `hotline demo`: the main job on embedded defaults. Three parties' nodes on
//! loopback with fresh keys, certificates and a signed agreement; a scripted
//! exchange over real mutual TLS; a fourth party joins by an amendment
//! adopted while every node runs; then every log and the cross-witnessed
//! checkpoints are verified, the four public exports reconciled (and once
//! more with CHL's log rewritten, to show the finding), and a timeline is
//! printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use hotline::config::Config;
use hotline::keys::IdentityKey;
use hotline::log::{checkpoint, verify};
use hotline::proto::{
    Category, CommCheckRequest, Indicator, Notice, NoticeKind, RespondRequest, ResponseStatus, SendNoticeRequest,
    Severity, Tlp,
};
use hotline::server::Running;
use hotline::{clock, state};
use serde_json::json;

mod dispute;
mod join;
pub(super) mod step;
mod timeline;

use super::view::Out;
use step::{operator, publish_roster, say, wait};

const PARTIES: [&str; 3] = ["PER", "CHL", "ARG"];

#[derive(clap::Args)]
pub struct Args {
    /// Create the parties in DIR and leave the nodes running for the CLI (Ctrl-C stops them).
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Run the demo as a tabletop exercise: every notice, and what answers it,
    /// is marked EXERCISE and kept out of the compliance figures.
    #[arg(long)]
    exercise: bool,
    /// Where to write PER's compliance report (report.html) and STIX export
    /// (stix.json); default: the --keep folder, else a new folder beside the
    /// temporary one, kept after the demo.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also print every entry of the four logs, merged in time order
    /// (`--json` always carries them).
    #[arg(long)]
    timeline: bool,
}

pub fn run(args: Args, out: Out) -> anyhow::Result<ExitCode> {
    super::files::init_tracing("error", super::files::LogFormat::Text);
    let root = match &args.keep {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
                bail!("{} is not empty; --keep needs a new or empty folder", dir.display());
            }
            dir.clone()
        }
        None => std::env::temp_dir().join(format!("hotline-demo-{}", std::process::id())),
    };
    let exercise = match args.exercise {
        true => hotline::proto::Exercise::Tabletop as i32,
        false => 0,
    };
    let files = args.out.clone().unwrap_or_else(|| match &args.keep {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("hotline-demo-{}-files", std::process::id())),
    });
    let shown = (args.keep.is_some(), args.timeline);
    let result = super::runtime::block_on(script(&root, shown, exercise, &files, out));
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

/// The demo's script; `keep`: leave the nodes running; `show_timeline`: print every log entry.
async fn script(
    root: &Path,
    (keep, show_timeline): (bool, bool),
    exercise: i32,
    files: &Path,
    out: Out,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    say(
        out,
        &format!(
            "hotline demo{}: three parties on loopback in {}",
            if exercise != 0 { " (a tabletop EXERCISE)" } else { "" },
            root.display()
        ),
    );
    let made = hotline::setup::local_cluster(root, &PARTIES, hotline::setup::DEMO_NORMS).await?;
    let mut configs: Vec<Config> = made.iter().map(|(c, _)| c.clone()).collect();
    // All at once: a starting node asks the others what they witnessed of its log.
    let starts = made.into_iter().map(|(config, listener)| async move {
        hotline::server::start(&config, Some(listener), hotline::clock::Clock::system()).await
    });
    let mut nodes: Vec<Running> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    for n in &nodes {
        say(
            out,
            &format!(
                "  node {} serving on https://{} (agreement signed by all three)",
                n.node.party(),
                n.addr
            ),
        );
    }
    let (per, chl, arg) = (nodes[0].node.clone(), nodes[1].node.clone(), nodes[2].node.clone());
    let (per, chl, arg) = (&per, &chl, &arg);
    let receipted = |n: &hotline::node::Node, id: &str| -> anyhow::Result<Vec<String>> {
        Ok(n.read(|c| state::receipts(c, id))?
            .into_iter()
            .map(|(p, _)| p)
            .collect())
    };

    say(
        out,
        "\n0. CHL and ARG publish rosters naming their points of contact, signed by their identity keys",
    );
    publish_roster(&configs[1], "María Rojas", "Diego Soto").await?;
    publish_roster(&configs[2], "Lucía Fernández", "Martín Gómez").await?;
    wait("every peer holds both rosters", 20, || {
        Ok([per, arg].iter().all(|n| n.rosters().version("CHL") == 2)
            && [per, chl].iter().all(|n| n.rosters().version("ARG") == 2))
    })
    .await?;
    say(
        out,
        "   CHL: María Rojas (technical, with CHL's operator certificate), Diego Soto (policy);\n   ARG: Lucía Fernández (technical), Martín Gómez (policy). Each roster is logged and delivered to every peer",
    );

    say(
        out,
        "\n1. PER notifies CHL and ARG of a HIGH-severity incident (TLP:AMBER)",
    );
    let notice = Notice {
        to: vec!["CHL".into(), "ARG".into()],
        kind: NoticeKind::Notification as i32,
        severity: Severity::High as i32,
        category: Category::MaliciousCode as i32,
        tlp: Tlp::Amber as i32,
        title: "Wiper malware at a regional grid operator".into(),
        summary: "Destructive malware on SCADA historians; C2 infrastructure below.".into(),
        language: "en".into(),
        translations: vec![hotline::proto::Translation {
            language: "es".into(),
            title: "Malware destructivo en un operador regional de la red eléctrica".into(),
            summary: "Malware destructivo en los históricos SCADA; infraestructura C2 abajo.".into(),
            authoritative: false,
        }],
        exercise,
        affected_sectors: vec!["energy".into()],
        indicators: vec![Indicator {
            r#type: "ipv4-addr".into(),
            value: "192.0.2.66".into(),
        }],
        ..Default::default()
    };
    let sent = operator(&configs[0])?
        .send_notice(SendNoticeRequest { notice: Some(notice) })
        .await
        .context("PER SendNotice")?
        .into_inner();
    wait("receipts from CHL and ARG", 20, || {
        Ok(receipted(per, &sent.id)?.len() == 2)
    })
    .await?;
    say(
        out,
        &format!(
            "   notice {} receipted by CHL and ARG: signed receipts with their checkpoints and inclusion proofs",
            sent.id
        ),
    );

    say(
        out,
        "2. María Rojas at CHL acknowledges (read), then answers INVESTIGATING with a promise; ARG stays silent",
    );
    let respond = |status: ResponseStatus, text: &str, promised_by: Option<prost_types::Timestamp>| RespondRequest {
        notice_id: sent.id.clone(),
        status: status as i32,
        text: text.into(),
        reason: match status {
            ResponseStatus::Investigating => hotline::proto::ReasonCode::MitigationUnderWay as i32,
            _ => 0,
        },
        promised_by,
    };
    let ack = operator(&configs[1])?
        .respond(respond(ResponseStatus::Acknowledged, "Read; looking into it.", None))
        .await
        .context("CHL acknowledges")?
        .into_inner();
    let promise = clock::to_proto(clock::now() + time::Duration::hours(1));
    let reply = operator(&configs[1])?
        .respond(respond(
            ResponseStatus::Investigating,
            "Checking our grid operators for the indicators; a full answer within the hour.",
            Some(promise),
        ))
        .await
        .context("CHL Respond")?
        .into_inner();
    wait("PER receives CHL's acknowledgement and answer", 20, || {
        Ok(
            per.read(|c| state::message(c, &ack.id))?.is_some()
                && per.read(|c| state::message(c, &reply.id))?.is_some(),
        )
    })
    .await?;
    wait("CHL receives PER's receipts", 20, || {
        Ok(receipted(chl, &ack.id)?.len() == 1 && receipted(chl, &reply.id)?.len() == 1)
    })
    .await?;
    let named = per
        .people([("CHL", "María Rojas")])
        .pop()
        .filter(|p| p.roster_version > 0)
        .map(|p| {
            format!(
                "{} ({}, CHL roster version {})",
                p.name,
                p.roles.join(", "),
                p.roster_version
            )
        })
        .context("PER does not know María Rojas from CHL's roster")?;
    say(
        out,
        &format!(
            "   acknowledgement {} and answer {} delivered and receipted; the promise is a clock of its own\n   PER shows the acknowledgement as signed by {named}",
            ack.id, reply.id
        ),
    );

    say(
        out,
        "3. ARG's acknowledgement (2s for HIGH under the demo norms) and response (3s) deadlines pass",
    );
    let count = |n: &hotline::node::Node, kind: hotline::proto::NormEventKind| -> anyhow::Result<usize> {
        Ok(n.read(|c| state::norm_events(c, Some(&sent.id), 20))?
            .iter()
            .filter(|e| e.party == "ARG" && e.kind() == kind)
            .count())
    };
    use hotline::proto::NormEventKind::{DeadlineMissed, Escalated};
    wait("two DEADLINE_MISSED and two escalations at PER and ARG", 20, || {
        Ok(count(per, DeadlineMissed)? == 2
            && count(arg, DeadlineMissed)? == 2
            && count(per, Escalated)? == 2
            && count(arg, Escalated)? == 2)
    })
    .await?;
    say(
        out,
        "   DEADLINE_MISSED logged by PER and by ARG itself, once for each clock ARG let pass;\n   each missed step escalated: a signed notice for ARG's policy contact Martín Gómez, ESCALATED logged on both sides",
    );

    say(
        out,
        "4. PER runs a communication check with every peer, and a human one with CHL",
    );
    let checks = operator(&configs[0])?
        .comm_check(CommCheckRequest {
            party: String::new(),
            human: false,
        })
        .await
        .context("PER CommCheck")?
        .into_inner()
        .notice_ids;
    wait("both peers answer", 20, || Ok(per.read(state::comm_checks)?.len() == 2)).await?;
    say(
        out,
        &format!(
            "   {} checks answered automatically; COMM_CHECK_OK logged",
            checks.len()
        ),
    );
    // A human check: CHL's node waits for a person, whose acknowledgement PER times.
    let human = operator(&configs[0])?
        .comm_check(CommCheckRequest {
            party: "CHL".into(),
            human: true,
        })
        .await
        .context("PER human CommCheck")?
        .into_inner()
        .notice_ids
        .remove(0);
    wait("CHL holds the human check", 20, || {
        Ok(chl.read(|c| state::message(c, &human))?.is_some())
    })
    .await?;
    operator(&configs[1])?
        .respond(RespondRequest {
            notice_id: human.clone(),
            status: ResponseStatus::Acknowledged as i32,
            text: "Duty officer here.".into(),
            ..Default::default()
        })
        .await
        .context("CHL acknowledges the human check")?;
    wait("PER records the human answer", 20, || {
        Ok(!per.read(|c| state::human_checks(c, "CHL", 1))?.is_empty())
    })
    .await?;
    let round_trip = per
        .read(|c| state::human_checks(c, "CHL", 1))?
        .first()
        .copied()
        .unwrap_or_default();
    say(
        out,
        &format!(
            "   a human check: a person at CHL acknowledged it; round trip {round_trip} ms, shown by hotline status"
        ),
    );
    // PER exchanged messages with both peers, and each of them with PER: each side holds the other's checkpoints.
    let pairs = [(0, "CHL"), (0, "ARG"), (1, "PER"), (2, "PER")];
    wait("cross-witnessed checkpoints", 10, || {
        Ok(pairs.iter().all(|(i, p)| {
            nodes[*i]
                .node
                .read(|c| state::last_witnessed(c, p))
                .map(|w| w.is_some())
                .unwrap_or(false)
        }))
    })
    .await?;

    let joined = join::join(root, &configs, &mut nodes, exercise, out).await?;
    configs.push(joined);
    let parties: Vec<String> = configs.iter().map(|c| c.party.clone()).collect();

    say(out, "\n6. Verifying every log and the cross-witnessed checkpoints");
    let mut verified = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let key = IdentityKey::load(&c.identity_key)?;
        let report = verify::verify_data_dir(&c.data, key.verifier(), |_, _| {})
            .with_context(|| format!("verifying {}'s log", parties[i]))?;
        say(
            out,
            &format!(
                "   {} log: {} entries, {} signed checkpoints, {} signatures in entries, root {}…  VALID",
                parties[i],
                report.entries,
                report.checkpoints,
                report.signatures,
                &report.root[..16]
            ),
        );
        verified.push(json!({"party": parties[i], "entries": report.entries, "checkpoints": report.checkpoints, "root": report.root}));
    }
    let mut witnessed = 0;
    for (i, n) in nodes.iter().enumerate() {
        for (party, size, note) in n.node.log().reader().witnessed(None)? {
            let j = parties
                .iter()
                .position(|p| *p == party)
                .context("witnessed an unknown party")?;
            let key = IdentityKey::load(&configs[j].identity_key)?;
            let cp = checkpoint::verify(&note, key.verifier())
                .with_context(|| format!("{} holds a bad checkpoint of {party}", parties[i]))?;
            let root = nodes[j].node.log().reader().root_at(size)?;
            if root != cp.root {
                bail!(
                    "{}'s witnessed checkpoint of {party} at size {size} does not match {party}'s log",
                    parties[i]
                );
            }
            witnessed += 1;
        }
    }
    say(
        out,
        &format!("   {witnessed} witnessed checkpoints match the logs they came from"),
    );

    say(
        out,
        "\n7. PER's compliance report and the STIX 2.1 export of its notices",
    );
    let (report, stix) = step::auditor_files(&configs[0], files)?;
    say(
        out,
        &format!(
            "   report (open it in a browser): {}\n   STIX 2.1 bundle for CERT tools: {}",
            report.display(),
            stix.display()
        ),
    );

    let dispute = dispute::dispute(&configs, &sent.id, &files.join("exports"), out)?;

    let timeline = timeline::timeline(&configs)?;
    if !out.json && show_timeline {
        super::view::outln!("\nTimeline (all four logs, merged)");
        for (at, party, line) in &timeline {
            super::view::outln!("  {at}  {party:<4} {}", super::view::term(line));
        }
    } else if !out.json {
        super::view::outln!(
            "\nThe four logs hold {} entries between them; hotline demo --timeline prints them in time order.",
            timeline.len()
        );
    }
    out.print(
        &json!({"notice": sent.id, "response": reply.id, "comm_checks": checks, "logs": verified,
                "witnessed_checkpoints": witnessed, "seconds": started.elapsed().as_secs_f64(),
                "report": report, "stix": stix, "dispute": dispute,
                "timeline": timeline.iter().map(|(at, p, l)| json!({"at": at, "party": p, "entry": l})).collect::<Vec<_>>()}),
        || format!("\ndemo completed in {:.1} s: every log verified.\n", started.elapsed().as_secs_f64()),
    );

    if keep {
        let cfg = |i: usize| configs[i].path.display().to_string();
        super::view::outln!(
            "\nThe nodes keep running (Ctrl-C stops them). In another terminal:\n  hotline status --config {per}\n  hotline inbox --follow --config {per}\n  hotline notice send --config {chl} --to PER --severity low --title \"test\"\n  hotline notice show {id} --config {per}\n  hotline respond {id} --config {arg} --status investigating --text \"late, sorry\"\n  hotline comm-check --config {per}\n  hotline audit verify --data {root}/PER\n",
            per = cfg(0),
            chl = cfg(1),
            arg = cfg(2),
            id = sent.id,
            root = root.display()
        );
        super::node::shutdown_signal().await;
    }
    for n in nodes {
        n.stop().await?;
    }
    Ok(ExitCode::SUCCESS)
}
