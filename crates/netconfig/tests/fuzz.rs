//! Property tests: no input makes the parser, the validator or a renderer panic. Two
//! generators: arbitrary text (with YAML punctuation over-represented), and documents shaped
//! like the schema (every device type, known and unknown fields, values of the right and
//! the wrong kinds, nested members) so that valid ones reach the renderers.
//!
//! `NETCONFIG_FUZZ_CASES` sets the number of cases per generator (default 2000).

mod support;

use netconfig::nics::{aliases, FixedNics};
use netconfig::schema::{FieldKind, DEVICE_TYPES};
use netconfig::{Eni, Ifcfg, Renderer, Severity};
use proptest::prelude::*;

fn facts() -> FixedNics {
    support::nics(&["em1", "em2", "em3", "eth0"])
}

/// The whole pipeline; returns whether the document reached the renderers.
fn pipeline(text: &str) -> bool {
    let Ok(root) = netconfig::parse(text) else {
        return false;
    };
    let facts = facts();
    let aliases = aliases(&facts, &[]).expect("no mapping");
    let mut found = netconfig::validate(&root);
    found.extend(netconfig::validate::unresolved_aliases(&root, &aliases));
    for d in &found {
        // Every finding must be printable as one line.
        assert!(!d.to_string().contains('\n'), "{d}");
    }
    if found.iter().any(|d| d.severity == Severity::Error) {
        return false;
    }
    let config = netconfig::network_config(&root, &aliases);
    for renderer in [&Ifcfg as &dyn Renderer, &Eni] {
        if let Ok(files) = renderer.render(&config, &facts) {
            let _ = netconfig::noop_output(&files, "", |_| None);
        }
    }
    true
}

fn cases() -> u32 {
    std::env::var("NETCONFIG_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_owned()),
        Just("no".to_owned()),
        Just("0".to_owned()),
        Just("01500".to_owned()),
        Just("4095".to_owned()),
        Just("192.0.2.1/24".to_owned()),
        Just("192.0.2.300/24".to_owned()),
        Just("2001:db8::1/64".to_owned()),
        Just("2001:db8::1".to_owned()),
        Just("self".to_owned()),
        Just("nic1".to_owned()),
        Just("nic9.20".to_owned()),
        Just("em2".to_owned()),
        Just("secure".to_owned()),
        Just("0x64".to_owned()),
        Just("~".to_owned()),
        Just("'quoted: text'".to_owned()),
        "[a-z0-9:./-]{0,12}",
    ]
}

fn value(depth: u32) -> BoxedStrategy<String> {
    let leaf = scalar().boxed();
    if depth == 0 {
        return leaf;
    }
    prop_oneof![
        3 => leaf,
        1 => prop::collection::vec(scalar(), 0..3).prop_map(|items| format!("[{}]", items.join(", "))),
        1 => routes(),
        1 => Just("[{ip_netmask: 192.0.2.5/24}, {ip_netmask: 2001:db8::5/64}]".to_owned()),
    ]
    .boxed()
}

fn routes() -> BoxedStrategy<String> {
    let route = (
        prop::option::of(prop_oneof![
            Just("192.0.2.1"),
            Just("2001:db8::1"),
            Just("self"),
            Just("bogus")
        ]),
        prop::option::of(prop_oneof![
            Just("10.0.0.0/8"),
            Just("10.0.0.1/8"),
            Just("::/0"),
            Just("0.0.0.0/0")
        ]),
        prop::option::of(any::<bool>()),
        prop::option::of(prop_oneof![Just("200"), Just("custom")]),
        prop::option::of(0u32..2000),
        prop::option::of(prop_oneof![Just("metric 10"), Just("table 5 onlink")]),
    )
        .prop_map(|(nh, dst, default, table, metric, options)| {
            let mut fields = Vec::new();
            if let Some(nh) = nh {
                fields.push(format!("next_hop: '{nh}'"));
            }
            if let Some(dst) = dst {
                fields.push(format!("ip_netmask: '{dst}'"));
            }
            if let Some(default) = default {
                fields.push(format!("default: {default}"));
            }
            if let Some(table) = table {
                fields.push(format!("table: {table}"));
            }
            if let Some(metric) = metric {
                fields.push(format!("metric: {metric}"));
            }
            if let Some(options) = options {
                fields.push(format!("route_options: '{options}'"));
            }
            format!("{{{}}}", fields.join(", "))
        });
    prop::collection::vec(route, 0..3)
        .prop_map(|r| format!("[{}]", r.join(", ")))
        .boxed()
}

/// A value of `kind`, valid most of the time.
fn value_of(kind: FieldKind, depth: u32) -> BoxedStrategy<String> {
    let valid: BoxedStrategy<String> = match kind {
        FieldKind::Text => "(em|eth|nic|br-|bond|team)[a-z]{0,3}[0-9]{1,2}".boxed(),
        FieldKind::Bool => prop_oneof![Just("true".to_owned()), Just("false".to_owned())].boxed(),
        FieldKind::Int => (1u32..9001).prop_map(|n| n.to_string()).boxed(),
        FieldKind::VlanId => (1u32..4095).prop_map(|n| n.to_string()).boxed(),
        FieldKind::Addresses => prop::collection::vec(
            prop_oneof![
                (1u8..250, 8u8..31).prop_map(|(h, p)| format!("{{ip_netmask: 192.0.2.{h}/{p}}}")),
                (1u16..999, 48u8..128)
                    .prop_map(|(h, p)| format!("{{ip_netmask: '2001:db8::{h}/{p}'}}")),
            ],
            1..3,
        )
        .prop_map(|a| format!("[{}]", a.join(", ")))
        .boxed(),
        FieldKind::Routes => routes(),
        FieldKind::Rules => Just(
            "[{rule: 'iif em1 table 200', comment: c}, {rule: 'from 192.0.2.0/24 table 200'}]"
                .to_owned(),
        )
        .boxed(),
        FieldKind::DnsServers => prop_oneof![
            Just("[192.0.2.53]".to_owned()),
            Just("[192.0.2.53, '2001:db8::53', 192.0.2.54]".to_owned()),
        ]
        .boxed(),
        FieldKind::Domain => prop_oneof![
            Just("example.com".to_owned()),
            Just("[a.example, b.example]".to_owned())
        ]
        .boxed(),
        FieldKind::TextOrList => prop_oneof![
            Just("'set bridge {name} other-config:x=y'".to_owned()),
            Just(
                "['br-set-external-id {name} bridge-id {name}', 'set port {name} tag=5']"
                    .to_owned()
            ),
        ]
        .boxed(),
        FieldKind::TextList => Just("['remote_ip=192.0.2.9', 'key=5']".to_owned()).boxed(),
        FieldKind::FailMode => {
            prop_oneof![Just("standalone".to_owned()), Just("secure".to_owned())].boxed()
        }
        FieldKind::TunnelType => {
            prop_oneof![Just("vxlan".to_owned()), Just("gre".to_owned())].boxed()
        }
        FieldKind::Pkey => prop_oneof![
            Just("100".to_owned()),
            Just("'0x64'".to_owned()),
            Just("32767".to_owned())
        ]
        .boxed(),
        FieldKind::Mac => Just("'52:54:00:12:34:56'".to_owned()).boxed(),
        FieldKind::Members(allowed) => {
            if depth == 0 {
                Just("[]".to_owned()).boxed()
            } else {
                prop::collection::vec(device_of(allowed.to_vec(), depth - 1), 1..3)
                    .prop_map(|m| format!("[{}]", m.join(", ")))
                    .boxed()
            }
        }
        FieldKind::Any => Just("x".to_owned()).boxed(),
    };
    prop_oneof![9 => valid, 1 => value(depth.min(1))].boxed()
}

/// A device of one of `types` as a flow mapping: its required fields, some optional ones,
/// now and then an unknown field or a near-miss type.
fn device_of(types: Vec<&'static str>, depth: u32) -> BoxedStrategy<String> {
    (
        prop::sample::select(types),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_flat_map(move |(type_name, pick, misspell)| {
            let device = netconfig::schema::device_type(type_name).expect("schema type");
            let names: Vec<&'static str> = netconfig::schema::field_names(device).collect();
            let optional: Vec<&'static str> = names
                .iter()
                .copied()
                .filter(|n| !device.required.contains(n))
                .collect();
            let chosen: Vec<&'static str> = device
                .required
                .iter()
                .copied()
                .chain(optional.iter().copied().filter(|n| {
                    pick.index(4) == 0 || *n == "members" || (n.len() + pick.index(7)) % 5 == 0
                }))
                .collect();
            let fields: Vec<BoxedStrategy<String>> = chosen
                .iter()
                .map(|field| {
                    let kind = netconfig::schema::field_kind(device, field, true)
                        .unwrap_or(FieldKind::Text);
                    let field = *field;
                    value_of(kind, depth)
                        .prop_map(move |v| format!("{field}: {v}"))
                        .boxed()
                })
                .collect();
            let type_text = if misspell && pick.index(20) == 0 {
                "interfac"
            } else {
                type_name
            };
            fields.prop_map(move |fields| {
                let mut body = vec![format!("type: {type_text}")];
                body.extend(fields);
                format!("{{{}}}", body.join(", "))
            })
        })
        .boxed()
}

fn device(depth: u32) -> BoxedStrategy<String> {
    device_of(DEVICE_TYPES.iter().map(|t| t.name).collect(), depth)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "(network_config:|\\n|  |- |type: |name: |[a-z0-9{}\\[\\],:'\"&*!|>#%@`-]){0,60}") {
        pipeline(&text);
    }
}

/// Schema-shaped documents; a share of them must be valid and reach the renderers, or the
/// generator tests nothing beyond the validator.
#[test]
fn schema_shaped_documents_never_panic() {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let rendered = std::cell::Cell::new(0u32);
    let strategy = prop::collection::vec(device(2), 1..4);
    runner
        .run(&strategy, |devices| {
            let text = format!("network_config: [{}]\n", devices.join(", "));
            if pipeline(&text) {
                rendered.set(rendered.get() + 1);
            }
            Ok(())
        })
        .expect("no panics");
    eprintln!(
        "{} of {} schema-shaped documents reached the renderers",
        rendered.get(),
        cases()
    );
    assert!(
        rendered.get() * 20 >= cases(),
        "only {} reached the renderers",
        rendered.get()
    );
}
