//! Plain-text tables for the demo's summary: left-aligned text, right-aligned numbers.

/// Renders `header` and `rows`, each line indented by `indent` spaces.
pub(super) fn render(header: &[&str], rows: &[Vec<String>], indent: usize) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..cols)
        .map(|i| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r.get(i)
                        .is_some_and(|c| c.is_empty() || c.parse::<f64>().is_ok())
                })
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if numeric[i] {
                    format!("{c:>w$}", w = width[i])
                } else {
                    format!("{c:<w$}", w = width[i])
                }
            })
            .collect();
        format!("{}{}\n", " ".repeat(indent), parts.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_align_right_text_left() {
        let t = render(
            &["table", "rows"],
            &[
                vec!["customers".into(), "5".into()],
                vec!["tx".into(), "1200".into()],
            ],
            2,
        );
        assert_eq!(
            t,
            "  table      rows\n  customers     5\n  tx         1200\n"
        );
    }
}
