//! A group chat on NFVinc's atomic broadcast (the `sequencer` service).
//!
//! The application connects to the sequencer service (an instance in its
//! own virtual network) and seats a few participants in the chat room.
//! Each participant is a member of the instance's group over the direct
//! channel (`libnfvinc::broadcast::Broadcast`) and types its lines
//! concurrently with the others, in FIFO-atomic mode; a moderator posts an
//! announcement over REST (`RestBroadcast`), and a REST subscriber follows
//! the room from the instance's event stream. Every participant must show
//! the very same transcript, every line once, each participant's own lines
//! in the order typed, and the REST subscriber the same again; otherwise
//! the run fails.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use libnfvinc::broadcast::{Broadcast, Received, RestBroadcast};
use nfvinc_examples::Connection;
use vnf_sequencer::{Mode, ProcessId};

/// A chat room whose transcript is the same for everyone.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    conn: Connection,
    /// Participants (at most 6).
    #[arg(long, default_value_t = 3)]
    participants: usize,
    /// Lines each participant types.
    #[arg(long, default_value_t = 5)]
    lines: usize,
    /// Keep the sequencer instance instead of removing it at the end.
    #[arg(long)]
    keep: bool,
}

const NAMES: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("chat: {e:#}");
        std::process::exit(1);
    }
}

/// Collects `n` lines from `recv`, within `within`.
fn transcript(
    n: usize,
    within: Duration,
    mut recv: impl FnMut(Duration) -> anyhow::Result<Option<Received>>,
) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + within;
    let mut lines = Vec::with_capacity(n);
    while lines.len() < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} lines arrived", lines.len());
        }
        match recv(Duration::from_millis(200))? {
            Some(Received::Message(m)) => lines.push(String::from_utf8_lossy(&m.payload).into()),
            Some(Received::Lost { first, end }) => bail!("lines {first}..{end} were lost"),
            None => {}
        }
    }
    Ok(lines)
}

fn run(a: Args) -> anyhow::Result<()> {
    ensure!(
        (2..=NAMES.len()).contains(&a.participants),
        "--participants must be 2 to {}",
        NAMES.len()
    );
    let client = a.conn.open()?;
    let t0 = Instant::now();
    let room = client
        .connect_service("sequencer")
        .context("connecting to the sequencer service")?;
    println!(
        "chat: room {} (group {}) ready in {:.1} ms, sequencer at {}:{}",
        room.id,
        room.direct.group.unwrap_or(0),
        t0.elapsed().as_secs_f64() * 1e3,
        room.direct.addr,
        room.direct.port
    );
    let result = chat(&a, &client, &room);
    if !a.keep {
        client.remove(&room.id).context("removing the room")?;
    }
    result
}

fn chat(
    a: &Args,
    client: &libnfvinc::rest::Client,
    room: &libnfvinc::rest::Instance,
) -> anyhow::Result<()> {
    let moderator = RestBroadcast::new(client.clone(), &room.id);
    let follower = moderator.subscribe()?;
    let members: Vec<Broadcast> = (0..a.participants)
        .map(|i| Broadcast::join_instance(client, room, ProcessId(i as u64 + 1)))
        .collect::<Result<_, _>>()
        .context("seating the participants")?;
    println!(
        "chat: {} participants joined over the direct channel",
        members.len()
    );

    let total = a.participants * a.lines + 1;
    let transcripts = std::thread::scope(|s| {
        let handles: Vec<_> = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                s.spawn(move || -> anyhow::Result<Vec<String>> {
                    for k in 1..=a.lines {
                        let line = format!("{}: message {k}", NAMES[i]);
                        m.send(Mode::Fifo, line.as_bytes(), Duration::from_secs(5))?;
                    }
                    transcript(total, Duration::from_secs(20), |t| Ok(m.recv(t)?))
                })
            })
            .collect();
        moderator.send(Mode::Atomic, "moderator: welcome, everyone")?;
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a participant panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let followed = transcript(total, Duration::from_secs(20), |t| Ok(follower.next(t)?))?;

    println!("chat: the transcript, as {} sees it:", NAMES[0]);
    for line in &transcripts[0] {
        println!("    {line}");
    }
    for (i, t) in transcripts.iter().enumerate() {
        ensure!(
            t == &transcripts[0],
            "{} saw another order than {}",
            NAMES[i],
            NAMES[0]
        );
        for (j, name) in NAMES.iter().take(a.participants).enumerate() {
            let own: Vec<&String> = t.iter().filter(|l| l.starts_with(name)).collect();
            let typed: Vec<String> = (1..=a.lines)
                .map(|k| format!("{name}: message {k}"))
                .collect();
            ensure!(
                own.iter()
                    .map(|s| s.as_str())
                    .eq(typed.iter().map(String::as_str)),
                "{} saw {}'s lines out of order or not once each: {own:?}",
                NAMES[i],
                NAMES[j]
            );
        }
    }
    ensure!(
        followed == transcripts[0],
        "the REST subscriber saw another transcript"
    );
    println!(
        "chat: {} participants and the REST subscriber saw the same {total} lines in the same order",
        a.participants
    );
    for m in members {
        m.leave_instance(client, &room.id)?;
    }
    Ok(())
}
