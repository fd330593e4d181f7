//! Reading Prometheus text (the `/metrics` answer) in tests.

/// The sum of the samples whose line `select` picks (labels included in
/// the line), e.g. every `accounts_http_requests_total{…route="/api/…"}`.
pub fn sum(text: &str, select: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#') && select(line))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of the sample named exactly `name` (no labels), if exported.
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_samples() {
        let text = "# HELP a_total x\na_total 3\nb{r=\"1\"} 2\nb{r=\"2\"} 5\n";
        assert_eq!(super::value(text, "a_total"), Some(3.0));
        assert_eq!(super::value(text, "a"), None);
        assert_eq!(super::sum(text, |l| l.starts_with("b{")), 7.0);
    }
}
