//! The deploy kit's Envoy policy (`deploy/envoy/envoy.yaml`, the only copy)
//! moved onto loopback for the end-to-end tests: the same routes, retries,
//! health checks and timeouts, with compose's addresses replaced by ports on
//! 127.0.0.1.

/// `deploy/envoy/envoy.yaml` as written.
pub const DEPLOY_CONFIG: &str = include_str!("../../deploy/envoy/envoy.yaml");

/// Where the rendered Envoy listens and which instances it balances.
#[derive(Clone, Copy, Debug)]
pub struct LoopbackPorts {
    pub admin: u16,
    pub listen: u16,
    pub upstreams: [u16; 2],
}

/// `config` with each compose address (the admin and listener on
/// `0.0.0.0`, the instances `accounts-1` and `accounts-2`) on loopback.
/// Panics if one of them is not there exactly once, so a change of the
/// deploy file cannot leave the tests on compose's addresses unnoticed.
pub fn render_for_loopback(config: &str, ports: LoopbackPorts) -> String {
    let on_loopback = |port: u16| format!("address: 127.0.0.1, port_value: {port}");
    let replacements = [
        (
            "address: 0.0.0.0, port_value: 9901",
            on_loopback(ports.admin),
        ),
        (
            "address: 0.0.0.0, port_value: 8080",
            on_loopback(ports.listen),
        ),
        (
            "address: accounts-1, port_value: 8080",
            on_loopback(ports.upstreams[0]),
        ),
        (
            "address: accounts-2, port_value: 8080",
            on_loopback(ports.upstreams[1]),
        ),
    ];
    let mut rendered = config.to_owned();
    for (compose, loopback) in replacements {
        let found = rendered.matches(compose).count();
        assert_eq!(found, 1, "`{compose}` in the Envoy config {found} times");
        rendered = rendered.replace(compose, &loopback);
    }
    rendered
}
