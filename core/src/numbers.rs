//! Numbers as the reports print them.

/// 342241 → "342,241".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = digits[..head].to_string();
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ASCII digits"));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::numbers::thousands;

    #[test]
    fn groups_of_three_from_the_right() {
        let cases =
            [(0, "0"), (999, "999"), (1000, "1,000"), (9952, "9,952"), (342_241, "342,241"), (1_000_000, "1,000,000")];
        for (n, want) in cases {
            assert_eq!(thousands(n), want);
        }
    }
}
