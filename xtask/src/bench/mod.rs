//! `cargo xtask bench [--quick]`: the load benchmark of issue 7.
//!
//! Builds `authgate` in release, starts it on a free loopback port with a throwaway SQLite
//! database and every SPEC default (Argon2id m = 19456 KiB, t = 2, p = 1; one hashing slot
//! per CPU), creates users, and drives it with the in-repo load generator ([`load`]):
//!
//! 1. `users_me`: `GET /users/me` with a valid bearer token, 64 connections;
//! 2. `healthz`: `GET /healthz`, 64 connections: the no-auth ceiling of this stack;
//! 3. `token_password`: `POST /token` password grant, 8 connections;
//! 4. `argon2_ceiling`: raw Argon2id verifications on as many threads as hashing slots;
//! 5. `token_refresh`: `POST /token` refresh grant, 16 connections, each its own chain;
//! 6. `storm`: 256 password-login loops while `/users/me` runs open-loop at 200 req/s.
//!
//! Each workload warms up, then is measured for a fixed window, and prints one line; the
//! results, with the date, core count, git commit and machine load, go to
//! `target/bench/latest.json` and `target/bench/run-<unix time>[-quick].json`. The figures
//! are only as quiet as the machine: the load generator shares the cores with the server,
//! and so does anything else running.

mod argon;
mod load;
mod server;
mod stats;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use self::load::{Call, Target, Window, form};
use self::server::{Binary, Scratch, Server};
use self::stats::{Summary, round};

/// Connections of the `/users/me` and `/healthz` workloads.
const READ_CONNECTIONS: usize = 64;
/// Connections of the password-grant workload.
const PASSWORD_CONNECTIONS: usize = 8;
/// Connections of the refresh-grant workload.
const REFRESH_CONNECTIONS: usize = 16;
/// Concurrent password-login loops of the storm.
const STORM_LOOPS: usize = 256;
/// `/users/me` requests per second during the storm.
const STORM_PROBE_RATE: f64 = 200.0;
/// Connections carrying those requests.
const STORM_PROBE_CONNECTIONS: usize = 8;
/// Users the storm logs in as (and the password and refresh workloads draw from): many, so
/// that the per-username backoff (5 attempts) is not what the storm measures.
const LOAD_USERS: usize = 64;
/// Loopback source addresses the storm comes from, 127.0.0.2 onwards: a storm has many
/// clients, and the per-address budget (50 a minute) would otherwise turn it into a stream
/// of cheap `429`s that never reaches the hashing slots.
const STORM_ADDRESSES: u8 = 16;
/// The user the read workloads authenticate as, created with `authgate user add`.
const BENCH_USER: &str = "bench";

/// Issue 7's targets.
const TARGET_USERS_ME_OVER_HEALTHZ: f64 = 0.60;
const TARGET_TOKEN_OVER_ARGON2: f64 = 0.90;
const TARGET_REFRESH_PER_SECOND: f64 = 2000.0;
const TARGET_STORM_P99_MS: f64 = 25.0;
const TARGET_STORM_BASE_RSS_MIB: f64 = 64.0;

/// The command-line options of `cargo xtask bench`.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// A few seconds per workload instead of ten (CI smoke).
    pub quick: bool,
}

/// Warm-up and measured window of every workload.
#[derive(Debug, Clone, Copy)]
struct Phases {
    warmup: Duration,
    duration: Duration,
    /// Slices the password grant and the Argon2 ceiling alternate in (see
    /// [`Bench::token_and_ceiling`]).
    slices: u32,
}

impl Phases {
    fn of(options: Options) -> Self {
        if options.quick {
            Self {
                warmup: Duration::from_millis(500),
                duration: Duration::from_millis(2500),
                slices: 2,
            }
        } else {
            Self {
                warmup: Duration::from_secs(2),
                duration: Duration::from_secs(10),
                slices: 5,
            }
        }
    }

    fn window(self) -> Window {
        Window::after(self.warmup, self.duration)
    }
}

/// Runs the benchmark. A debug build of xtask first rebuilds itself in release and runs
/// that, so that the load generator and the Argon2 ceiling are optimised code.
///
/// # Errors
///
/// Build, startup, setup or I/O failures; a workload's refusals are figures, not errors.
pub fn run(options: Options) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        let mut release = crate::cargo();
        release.args([
            "run",
            "--release",
            "--locked",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "bench",
        ]);
        if options.quick {
            release.arg("--quick");
        }
        return crate::run(release);
    }

    let mut build = crate::cargo();
    build.args(["build", "--release", "--locked", "-p", "authgate"]);
    crate::run(build)?;

    let phases = Phases::of(options);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let now = unix_now();
    let load_before = load_average();

    let secret = format!("Qz{:x}x{:x}Kw", now.as_nanos(), std::process::id());
    let scratch = Scratch::create(now.as_nanos())?;
    let binary = Binary {
        path: target_dir().join("release").join("authgate"),
        database_url: format!("sqlite://{}", scratch.path().join("bench.db").display()),
        admin_password: format!("first-{secret}"),
    };
    // Declared after `scratch`, so dropped (killed) before the directory is removed.
    let mut server = binary.serve(scratch.path())?;
    eprintln!(
        "bench: authgate (pid {}) on {}",
        server.pid(),
        server.addr()
    );
    let bench_password = format!("reader-{secret}");
    binary.add_user(BENCH_USER, &bench_password)?;
    let load_password = format!("shared-{secret}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let target = Target::new(server.addr())?;
    let setup = runtime.block_on(setup(
        &target,
        &binary.admin_password,
        &bench_password,
        &load_password,
    ))?;

    println!(
        "authgate bench: {cores} cores, {} s per workload after {} s warm-up{}, load average {}",
        phases.duration.as_secs_f64(),
        phases.warmup.as_secs_f64(),
        if options.quick { " (--quick)" } else { "" },
        load_before.as_deref().unwrap_or("unknown"),
    );
    let mut bench = Bench {
        runtime: &runtime,
        server: &mut server,
        target: &target,
        phases,
        results: serde_json::Map::new(),
        rss_resets: true,
    };

    let users_me_call = Call::Get {
        path: "/users/me",
        authorization: Some(setup.bearer.clone()),
    };
    let users_me = bench.closed(
        "users_me",
        &format!("{READ_CONNECTIONS} conns"),
        vec![(users_me_call.clone(), LOOPBACK); READ_CONNECTIONS],
    )?;
    let healthz = bench.closed(
        "healthz",
        &format!("{READ_CONNECTIONS} conns"),
        vec![
            (
                Call::Get {
                    path: "/healthz",
                    authorization: None,
                },
                LOOPBACK
            );
            READ_CONNECTIONS
        ],
    )?;
    let (token, ceiling) = bench.token_and_ceiling(
        &(0..PASSWORD_CONNECTIONS)
            .map(|index| {
                let form = setup.logins[index % setup.logins.len()].clone();
                (Call::PasswordGrant { form }, LOOPBACK)
            })
            .collect::<Vec<_>>(),
        cores,
    )?;
    let refresh = bench.closed(
        "token_refresh",
        &format!("{REFRESH_CONNECTIONS} conns"),
        (0..REFRESH_CONNECTIONS)
            .map(|index| {
                let login = setup.logins[index % setup.logins.len()].clone();
                (Call::RefreshChain { login }, LOOPBACK)
            })
            .collect(),
    )?;
    let storm = bench.storm(&users_me_call, &setup.logins)?;
    let results = std::mem::take(&mut bench.results);
    let rss_resets = bench.rss_resets;

    let users_me_over_healthz = users_me.per_second / healthz.per_second.max(f64::EPSILON);
    let token_over_argon2 = token.per_second / ceiling.per_second.max(f64::EPSILON);
    let rss_budget =
        TARGET_STORM_BASE_RSS_MIB + cores as f64 * f64::from(argon::MEMORY_KIB) / 1024.0;
    println!();
    let verdicts = [
        verdict(
            "users_me / healthz",
            users_me_over_healthz,
            ">=",
            TARGET_USERS_ME_OVER_HEALTHZ,
            "",
        ),
        verdict(
            "token / argon2_ceiling",
            token_over_argon2,
            ">=",
            TARGET_TOKEN_OVER_ARGON2,
            "",
        ),
        verdict(
            "token_refresh",
            refresh.per_second,
            ">=",
            TARGET_REFRESH_PER_SECOND,
            " req/s",
        ),
        verdict(
            "storm users_me p99",
            storm.probe_p99_ms,
            "<=",
            TARGET_STORM_P99_MS,
            " ms",
        ),
        verdict(
            "storm peak RSS",
            storm.peak_rss_mib,
            "<=",
            rss_budget,
            " MiB",
        ),
    ];
    for verdict in &verdicts {
        println!("{}", verdict.line());
    }
    if !rss_resets {
        println!("note: the kernel refused to reset VmHWM; peak RSS figures are cumulative");
    }

    let load_after = load_average();
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).map(|status| !status.is_empty());
    let report = json!({
        "date": civil_date(now.as_secs()),
        "unix_time": now.as_secs(),
        "cores": cores,
        "git_commit": commit,
        "git_dirty": dirty,
        "quick": options.quick,
        "warmup_s": phases.warmup.as_secs_f64(),
        "duration_s": phases.duration.as_secs_f64(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "server": {
            "database": "sqlite (temporary)",
            "argon2": {"memory_kib": argon::MEMORY_KIB, "iterations": argon::ITERATIONS, "parallelism": argon::PARALLELISM},
            "max_concurrent_hashes": cores,
            "peak_rss_per_workload": rss_resets,
        },
        "workloads": Value::Object(results),
        "ratios": {
            "users_me_over_healthz": round(users_me_over_healthz, 3),
            "token_over_argon2_ceiling": round(token_over_argon2, 3),
        },
        "targets": {
            "users_me_over_healthz_min": TARGET_USERS_ME_OVER_HEALTHZ,
            "token_over_argon2_ceiling_min": TARGET_TOKEN_OVER_ARGON2,
            "token_refresh_per_second_min": TARGET_REFRESH_PER_SECOND,
            "storm_users_me_p99_ms_max": TARGET_STORM_P99_MS,
            "storm_peak_rss_mib_max": round(rss_budget, 1),
            "checks": verdicts.iter().map(Verdict::to_json).collect::<Vec<_>>(),
        },
    });
    // `latest.json` for tools, and a copy per run so that runs can be compared later.
    let folder = target_dir().join("bench");
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let text = serde_json::to_string_pretty(&report).context("rendering the report")? + "\n";
    let kept = folder.join(format!(
        "run-{}{}.json",
        now.as_secs(),
        if options.quick { "-quick" } else { "" }
    ));
    for path in [folder.join("latest.json"), kept] {
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The source address of every connection but the storm's.
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What the workloads need from the running server.
struct Setup {
    /// `Bearer <access token of BENCH_USER>`.
    bearer: HeaderValue,
    /// A password-grant form per load user.
    logins: Vec<Bytes>,
}

/// Logs in, and creates the load users through `POST /users` as the administrator.
async fn setup(
    target: &Target,
    admin_password: &str,
    bench_password: &str,
    load_password: &str,
) -> anyhow::Result<Setup> {
    let mut connection = target.connect(LOOPBACK).await?;
    let bench_token = password_login(&mut connection, BENCH_USER, bench_password).await?;
    let admin_token = password_login(&mut connection, "admin", admin_password).await?;
    let admin = HeaderValue::from_str(&format!("Bearer {admin_token}"))
        .context("the administrator's token as a header")?;

    let names: Vec<String> = (0..LOAD_USERS)
        .map(|index| format!("load-{index:02}"))
        .collect();
    let mut creators = tokio::task::JoinSet::new();
    for lane in 0..4 {
        let names: Vec<String> = names.iter().skip(lane).step_by(4).cloned().collect();
        let target = target.clone();
        let admin = admin.clone();
        let password = load_password.to_owned();
        creators.spawn(async move {
            let mut connection = target.connect(LOOPBACK).await?;
            for name in names {
                let body = json!({"username": name, "password": password}).to_string();
                let reply = connection
                    .post(
                        "/users",
                        "application/json",
                        Bytes::from(body),
                        Some(&admin),
                    )
                    .await?;
                if reply.status != StatusCode::CREATED {
                    bail!(
                        "creating {name}: POST /users answered {}: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    );
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = creators.join_next().await {
        joined.context("a user-creating task panicked")??;
    }
    Ok(Setup {
        bearer: HeaderValue::from_str(&format!("Bearer {bench_token}"))
            .context("the access token as a header")?,
        logins: names
            .iter()
            .map(|name| {
                form(&[
                    ("grant_type", "password"),
                    ("username", name),
                    ("password", load_password),
                ])
            })
            .collect(),
    })
}

/// A password-grant login on `connection`; the access token.
async fn password_login(
    connection: &mut load::Connection,
    username: &str,
    password: &str,
) -> anyhow::Result<String> {
    let reply = connection
        .token(form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ]))
        .await?;
    if !reply.status.is_success() {
        bail!(
            "logging in as {username}: POST /token answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    load::access_token_of(&reply.body)
}

/// The storm's figures that the verdicts need.
struct StormFigures {
    probe_p99_ms: f64,
    peak_rss_mib: f64,
}

/// Runs workloads against one server and collects their JSON.
struct Bench<'a> {
    runtime: &'a Runtime,
    server: &'a mut Server,
    target: &'a Target,
    phases: Phases,
    results: serde_json::Map<String, Value>,
    rss_resets: bool,
}

impl Bench<'_> {
    /// Starts a peak-RSS measurement; returns the RSS it starts from, in MiB (memory the
    /// server kept from earlier workloads shows here).
    fn reset_rss(&mut self) -> anyhow::Result<f64> {
        self.rss_resets &= self.server.reset_peak_rss();
        self.server.rss_mib()
    }

    /// The server's peak RSS since the last reset, after checking it is still alive.
    fn peak_rss(&mut self) -> anyhow::Result<f64> {
        self.server.ensure_running()?;
        self.server.peak_rss_mib()
    }

    /// A closed-loop HTTP workload: one connection per `plan` entry.
    fn closed(
        &mut self,
        name: &str,
        shape: &str,
        plan: Vec<(Call, IpAddr)>,
    ) -> anyhow::Result<Summary> {
        let workers = self
            .runtime
            .block_on(load::prepare(self.target, plan))
            .with_context(|| format!("preparing {name}"))?;
        let rss_start = self.reset_rss()?;
        let window = self.phases.window();
        // The server's CPU time over the measured window, read on a thread of its own.
        let pid = self.server.pid();
        let cpu = std::thread::spawn(move || -> anyhow::Result<f64> {
            std::thread::sleep(window.start.saturating_duration_since(Instant::now()));
            let start = server::cpu_seconds_of(pid)?;
            std::thread::sleep(window.end.saturating_duration_since(Instant::now()));
            Ok(server::cpu_seconds_of(pid)? - start)
        });
        let tally = self
            .runtime
            .block_on(async { load::gather(load::spawn_closed(workers, window)).await })?;
        let summary = tally.summarize(self.phases.duration);
        let cpu_seconds = cpu
            .join()
            .map_err(|_| anyhow::anyhow!("the CPU sampler panicked"))??;
        let rss = self.peak_rss()?;
        // Server CPU per successful request: the cost the load generator does not blur.
        #[allow(clippy::cast_precision_loss)]
        let cpu_us = cpu_seconds * 1e6 / summary.ok.max(1) as f64;
        println!(
            "{}  server CPU {cpu_us:>5.0} us/req",
            line(name, shape, "req/s", &summary, Some(rss))
        );
        let mut value = summary.to_json(Some(rss));
        value["shape"] = json!(shape);
        value["rss_start_mib"] = json!(round(rss_start, 1));
        value["server_cpu_us_per_request"] = json!(round(cpu_us, 1));
        self.results.insert(name.to_owned(), value);
        Ok(summary)
    }

    /// Workloads 3 and 4: the password grant and its ceiling, the raw Argon2id rate on
    /// `threads` threads in this process (the server idles meanwhile). Their ratio is the
    /// figure that matters, and on a shared machine the background load drifts over a
    /// minute, so they alternate in [`Phases::slices`] slices that add up to one window each:
    /// both see the same conditions.
    fn token_and_ceiling(
        &mut self,
        plan: &[(Call, IpAddr)],
        threads: usize,
    ) -> anyhow::Result<(Summary, Summary)> {
        let slices = self.phases.slices.max(1);
        let slice = Phases {
            warmup: self.phases.warmup / slices,
            duration: self.phases.duration / slices,
            slices: 1,
        };
        let rss_start = self.reset_rss()?;
        let mut token = stats::Tally::default();
        let mut ceiling = stats::Tally::default();
        for _ in 0..slices {
            let workers = self
                .runtime
                .block_on(load::prepare(self.target, plan.to_vec()))
                .context("preparing token_password")?;
            let window = slice.window();
            token.merge(
                self.runtime
                    .block_on(async { load::gather(load::spawn_closed(workers, window)).await })?,
            );
            ceiling.merge(argon::ceiling(threads, slice.warmup, slice.duration)?);
        }
        let token = token.summarize(self.phases.duration);
        let ceiling = ceiling.summarize(self.phases.duration);
        let rss = self.peak_rss()?;
        let token_shape = format!("{} conns, {slices} slices", plan.len());
        let ceiling_shape = format!("{threads} threads, {slices} slices");
        println!(
            "{}",
            line("token_password", &token_shape, "req/s", &token, Some(rss))
        );
        println!(
            "{}  (in xtask, server idle)",
            line("argon2_ceiling", &ceiling_shape, "verif/s", &ceiling, None)
        );
        for (name, summary, shape, rss) in [
            ("token_password", token, token_shape, Some(rss)),
            ("argon2_ceiling", ceiling, ceiling_shape, None),
        ] {
            let mut value = summary.to_json(rss);
            value["shape"] = json!(shape);
            if rss.is_some() {
                value["rss_start_mib"] = json!(round(rss_start, 1));
            }
            self.results.insert(name.to_owned(), value);
        }
        Ok((token, ceiling))
    }

    /// Workload 6: the login storm, with `/users/me` probed open-loop throughout.
    fn storm(&mut self, users_me: &Call, logins: &[Bytes]) -> anyhow::Result<StormFigures> {
        let probes = vec![(users_me.clone(), LOOPBACK); STORM_PROBE_CONNECTIONS];
        let storm = (0..STORM_LOOPS)
            .map(|index| {
                let form = logins[index % logins.len()].clone();
                let host = 2 + u8::try_from(index % usize::from(STORM_ADDRESSES)).unwrap_or(0);
                (
                    Call::PasswordGrant { form },
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)),
                )
            })
            .collect();
        // The probes get a runtime and a thread of their own, so that their latency is the
        // server's, not time spent queueing behind 256 storm tasks inside this process.
        let probe_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the probe runtime")?;
        let probes = probe_runtime.block_on(load::prepare(self.target, probes))?;
        let storm = self.runtime.block_on(load::prepare(self.target, storm))?;
        let rss_start = self.reset_rss()?;
        let window = self.phases.window();
        let runtime = self.runtime;
        let (probe_tally, storm_tally) = std::thread::scope(|scope| {
            let probing = scope.spawn(|| {
                probe_runtime.block_on(async {
                    load::gather_open(load::spawn_open(probes, window, STORM_PROBE_RATE)).await
                })
            });
            let storm_tally =
                runtime.block_on(async { load::gather(load::spawn_closed(storm, window)).await });
            let probe_tally = probing
                .join()
                .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?;
            anyhow::Ok((probe_tally?, storm_tally?))
        })?;
        let probe = probe_tally.scheduled.summarize(self.phases.duration);
        let service = probe_tally.service.summarize(self.phases.duration);
        let logins = storm_tally.summarize(self.phases.duration);
        let rss = self.peak_rss()?;
        let probe_shape =
            format!("{STORM_PROBE_RATE:.0}/s on {STORM_PROBE_CONNECTIONS} conns, open loop");
        let login_shape =
            format!("{STORM_LOOPS} loops, {LOAD_USERS} users, {STORM_ADDRESSES} addresses");
        println!(
            "{}  [service time: p50 {:.2} ms, p99 {:.2} ms]",
            line("storm users_me", &probe_shape, "req/s", &probe, Some(rss)),
            service.p50_ms,
            service.p99_ms,
        );
        println!(
            "{}  [429: {}, 503: {}, other: {}, io: {}; attempts {:.1}/s]",
            line("storm logins", &login_shape, "ok/s", &logins, None),
            logins.throttled,
            logins.busy,
            logins.other_status,
            logins.io,
            (logins.ok + logins.errors()) as f64 / logins.seconds,
        );
        let mut probe_json = probe.to_json(Some(rss));
        probe_json["shape"] = json!(probe_shape);
        probe_json["latency_from"] = json!("scheduled send (open loop)");
        probe_json["service_time"] = service.to_json(None);
        let mut login_json = logins.to_json(None);
        login_json["shape"] = json!(login_shape);
        login_json["attempts_per_second"] = json!(round(
            (logins.ok + logins.errors()) as f64 / logins.seconds,
            1
        ));
        self.results.insert(
            "storm".to_owned(),
            json!({
                "users_me": probe_json,
                "logins": login_json,
                "peak_rss_mib": round(rss, 1),
                "rss_start_mib": round(rss_start, 1),
            }),
        );
        Ok(StormFigures {
            probe_p99_ms: probe.p99_ms,
            peak_rss_mib: rss,
        })
    }
}

/// One workload's line.
fn line(name: &str, shape: &str, unit: &str, summary: &Summary, rss: Option<f64>) -> String {
    let mut text = format!(
        "{name:<16} {shape:<34} {rate:>9.1} {unit:<7}  p50 {p50:>8.2} ms  p99 {p99:>8.2} ms  p99.9 {p999:>8.2} ms  errors {errors:>6}",
        rate = summary.per_second,
        p50 = summary.p50_ms,
        p99 = summary.p99_ms,
        p999 = summary.p999_ms,
        errors = summary.errors(),
    );
    if let Some(mib) = rss {
        let _ = write!(text, "  peak RSS {mib:>6.1} MiB");
    }
    text
}

/// One of issue 7's targets against the measured value.
struct Verdict {
    name: &'static str,
    value: f64,
    relation: &'static str,
    target: f64,
    unit: &'static str,
    met: bool,
}

/// Compares `value` with `target` in the direction of `relation` (`>=` or `<=`).
fn verdict(
    name: &'static str,
    value: f64,
    relation: &'static str,
    target: f64,
    unit: &'static str,
) -> Verdict {
    let met = match relation {
        ">=" => value >= target,
        _ => value <= target,
    };
    Verdict {
        name,
        value,
        relation,
        target,
        unit,
        met,
    }
}

impl Verdict {
    fn line(&self) -> String {
        format!(
            "{name:<24} {value:>9.2}{unit}  (target {relation} {target}{unit}: {status})",
            name = self.name,
            value = self.value,
            unit = self.unit,
            relation = self.relation,
            target = self.target,
            status = if self.met { "met" } else { "MISSED" }
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "check": self.name,
            "value": round(self.value, 3),
            "relation": self.relation,
            "target": round(self.target, 3),
            "unit": self.unit.trim(),
            "met": self.met,
        })
    }
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `target/` in the repository).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| crate::root().join("target"), PathBuf::from)
}

/// Time since the Unix epoch, for the report's date and for unique scratch names.
fn unix_now() -> Duration {
    #[allow(clippy::disallowed_methods)] // xtask is tooling, not the service: no Clock port here.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `YYYY-MM-DD` (UTC) of a Unix time, by the civil-from-days algorithm.
fn civil_date(unix_seconds: u64) -> String {
    let days = i64::try_from(unix_seconds / 86_400).unwrap_or(0) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` shows them.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The trimmed output of a successful `git` command in the repository.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(crate::root())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(1_700_000_000), "2023-11-14");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_795_824_000), "2026-11-28");
    }

    #[test]
    fn verdicts_compare_in_the_stated_direction() {
        assert!(verdict("x", 0.7, ">=", 0.6, "").met);
        assert!(!verdict("x", 30.0, "<=", 25.0, " ms").met);
    }
}
