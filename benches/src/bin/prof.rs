//! Runs one codec workload of the criterion `wire` bench N times, for
//! instruction counts under callgrind, where wall-clock timings are too
//! noisy (a shared machine) to compare two versions or two libraries.
//!
//! Usage: `prof LIBRARY WORKLOAD N`, or `prof compare WORKLOAD [ROUNDS]`
//!
//! * LIBRARY: `signpost`, `domain`, `hickory` or `simple`
//! * WORKLOAD: `route`, `walk`, `build` or `redirect` (the criterion groups
//!   `parse_query_route`, `parse_response_walk`, `build_response`,
//!   `redirect_path`)
//!
//! Each workload's output is checked once before the loop, as the bench
//! does. `benches/prof.sh` runs this under callgrind with N = 0 and N = 20000
//! and reports (Ir(N) − Ir(0)) / N, the instructions of one iteration.
//!
//! `compare` times signpost-wire and `domain` on one workload in alternating
//! batches of 10 000 iterations (ROUNDS of each, default 200) and prints the
//! fastest batch of each in ns per iteration: on a machine shared with other
//! jobs the fastest batch is the one least disturbed, so the ratio is a
//! usable estimate between criterion runs on a quiet machine.

#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use signpost_benches::codecs::{Outcome, dom, hickory, signpost, simple};
use signpost_benches::{Digest, QUERY, QUERY_ROUTE, REDIRECT_ANSWER, RESPONSE, RESPONSE_WALK, Transcript};

/// A response builder writing into a reused buffer.
type Build = Box<dyn Fn(&mut Vec<u8>) -> Outcome>;

/// One library's four workloads.
struct Library {
    route_check: fn(&[u8], &mut Transcript) -> Outcome,
    route: fn(&[u8], &mut Digest) -> Outcome,
    walk_check: fn(&[u8], &mut Transcript) -> Outcome,
    walk: fn(&[u8], &mut Digest) -> Outcome,
    build: Build,
    redirect: fn(&[u8], &mut Vec<u8>) -> Outcome,
    /// Whether the built response must be [`RESPONSE`] byte for byte
    /// (simple-dns writes the OPT record first in the additional section).
    exact_build: bool,
}

/// The four workloads of one codec module.
macro_rules! library {
    ($codec:ident, $exact_build:expr) => {{
        let data = $codec::ResponseData::new();
        Library {
            route_check: $codec::route,
            route: $codec::route,
            walk_check: $codec::walk,
            walk: $codec::walk,
            build: Box::new(move |buf| black_box(&data).build(buf)),
            redirect: $codec::redirect,
            exact_build: $exact_build,
        }
    }};
}

fn library(name: &str) -> Option<Library> {
    Some(match name {
        "signpost" => library!(signpost, true),
        "domain" => library!(dom, true),
        "hickory" => library!(hickory, true),
        "simple" => library!(simple, false),
        _ => return None,
    })
}

/// Checks a walker's transcript once, then runs it `iterations` times.
fn run_walk(
    packet: &[u8],
    expected: &[&str],
    check: fn(&[u8], &mut Transcript) -> Outcome,
    walk: fn(&[u8], &mut Digest) -> Outcome,
    iterations: u64,
) -> Outcome {
    let mut transcript = Transcript::new();
    check(packet, &mut transcript)?;
    if transcript.lines != expected {
        return Err(format!("walk transcript differs: {:?}", transcript.lines).into());
    }
    for _ in 0..iterations {
        let mut digest = Digest::default();
        walk(black_box(packet), &mut digest)?;
        black_box(digest);
    }
    Ok(())
}

/// Checks a writer's output once (byte for byte if `exact`, else its
/// length), then runs it `iterations` times into the same buffer.
fn run_write(expected: &[u8], exact: bool, write: &dyn Fn(&mut Vec<u8>) -> Outcome, iterations: u64) -> Outcome {
    let mut buf = Vec::with_capacity(512);
    write(&mut buf)?;
    if (exact && buf != expected) || buf.len() != expected.len() {
        return Err(format!("wrote {buf:02x?}, expected {expected:02x?}").into());
    }
    for _ in 0..iterations {
        write(&mut buf)?;
        black_box(buf.as_slice());
    }
    Ok(())
}

fn run(library: &Library, workload: &str, iterations: u64) -> Outcome {
    match workload {
        "route" => run_walk(&QUERY, QUERY_ROUTE, library.route_check, library.route, iterations),
        "walk" => run_walk(&RESPONSE, RESPONSE_WALK, library.walk_check, library.walk, iterations),
        "build" => run_write(&RESPONSE, library.exact_build, &*library.build, iterations),
        "redirect" => {
            let redirect = library.redirect;
            run_write(&REDIRECT_ANSWER, true, &|buf| redirect(black_box(&QUERY), buf), iterations)
        }
        other => Err(format!("unknown workload {other}").into()),
    }
}

/// Iterations per timed batch in `compare`.
const BATCH: u64 = 10_000;

/// The fastest of `rounds` alternating batches of each library, in ns per
/// iteration (signpost-wire, domain).
fn compare(workload: &str, rounds: u32) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let libraries = [library("signpost").ok_or("signpost")?, library("domain").ok_or("domain")?];
    let mut best = [f64::INFINITY; 2];
    for _ in 0..rounds {
        for (library, best) in libraries.iter().zip(&mut best) {
            let start = Instant::now();
            run(library, workload, BATCH)?;
            let per_iteration = start.elapsed().as_secs_f64() * 1e9 / BATCH as f64;
            *best = best.min(per_iteration);
        }
    }
    Ok((best[0], best[1]))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, workload, rest @ ..] = args.as_slice()
        && mode == "compare"
    {
        let rounds = rest.first().and_then(|rounds| rounds.parse().ok()).unwrap_or(200);
        return match compare(workload, rounds) {
            Ok((signpost, domain)) => {
                println!(
                    "{workload}: signpost-wire {signpost:.1} ns, domain {domain:.1} ns, domain/signpost {:.2}",
                    domain / signpost
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("compare {workload}: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let [_, library_name, workload, iterations] = args.as_slice() else {
        eprintln!("usage: prof signpost|domain|hickory|simple route|walk|build|redirect N");
        return ExitCode::FAILURE;
    };
    let Some(library) = library(library_name) else {
        eprintln!("unknown library {library_name}");
        return ExitCode::FAILURE;
    };
    let Ok(iterations) = iterations.parse::<u64>() else {
        eprintln!("N must be a number, got {iterations}");
        return ExitCode::FAILURE;
    };
    match run(&library, workload, iterations) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{library_name} {workload}: {err}");
            ExitCode::FAILURE
        }
    }
}
