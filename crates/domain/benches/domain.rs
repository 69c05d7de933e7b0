//! Benchmarks of the pure rules on the request path: the password policy (with its search of
//! the embedded list of common passwords), username parsing, and scope parsing and granting.

use std::hint::black_box;

use authgate_domain::{Password, PasswordPolicy, Scope, ScopeSet, Username};
use criterion::{Criterion, criterion_group, criterion_main};

fn password_policy(criterion: &mut Criterion) {
    let policy = PasswordPolicy::new(PasswordPolicy::FLOOR).expect("the floor is valid");
    let username = Username::parse("alice").expect("valid username");
    // The longest password the policy accepts: every rule has to read all of it.
    let mut longest = "correct-horse-".repeat(74);
    longest.truncate(PasswordPolicy::MAX_BYTES);
    let cases = [
        ("common_hit", "qwertyuiop".to_owned()),
        ("common_miss", "tundra-violet-quasar-71".to_owned()),
        ("long_1024_bytes", longest),
    ];
    let mut group = criterion.benchmark_group("password_policy_check");
    for (name, secret) in cases {
        let password = Password::new(secret);
        group.bench_function(name, |bencher| {
            bencher.iter(|| policy.check(black_box(&password), black_box(&username)));
        });
    }
    group.finish();
}

fn username_parse(criterion: &mut Criterion) {
    criterion.bench_function("username_parse", |bencher| {
        bencher.iter(|| Username::parse(black_box("Alice.Example-42")));
    });
}

fn scope_set(criterion: &mut Criterion) {
    let requested = "profile:read profile:write users:read";
    criterion.bench_function("scope_set_parse", |bencher| {
        bencher.iter(|| ScopeSet::parse(black_box(requested)));
    });

    let allowed = ScopeSet::all();
    let narrower = ScopeSet::from_iter([Scope::ProfileRead, Scope::UsersRead]);
    let too_wide = ScopeSet::all();
    let profile_only = ScopeSet::default_for_new_user();
    let mut group = criterion.benchmark_group("scope_set_grant");
    group.bench_function("everything_allowed", |bencher| {
        bencher.iter(|| ScopeSet::grant(black_box(None), black_box(allowed)));
    });
    group.bench_function("narrower_request", |bencher| {
        bencher.iter(|| ScopeSet::grant(black_box(Some(narrower)), black_box(allowed)));
    });
    group.bench_function("refused_request", |bencher| {
        bencher.iter(|| ScopeSet::grant(black_box(Some(too_wide)), black_box(profile_only)));
    });
    group.finish();
}

criterion_group!(benches, password_policy, username_parse, scope_set);
criterion_main!(benches);
