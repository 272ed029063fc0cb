//! Where a config parse error is, in the words a user would use: the key, the table
//! (`[run]`, `[[variants]] #2 (name = "thp")`, `the top level`) and the line and column,
//! added to the TOML parser's own message.

/// The parser's message for `e` with the key, the table and the line it happened in.
pub(super) fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let mut msg = e.message().trim().to_string();
    let Some(span) = e.span() else { return msg };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let col = start - line_start + 1;
    let place = table_at(text, start, line_start);
    if msg.starts_with("unknown field") {
        if let Some(i) = msg.find(", expected") {
            msg.insert_str(i, &format!(" in {place}"));
        } else {
            msg.push_str(&format!(" in {place}"));
        }
    } else {
        // Name the key whose value is wrong (`timeout_s: number too large …`).
        let line = text[line_start..].lines().next().unwrap_or("");
        if let Some((key, _)) = line
            .split_once('=')
            .filter(|_| !line.trim().starts_with('['))
        {
            let key = key.trim();
            if !key.is_empty() && !msg.contains(&format!("`{key}`")) {
                msg = format!("`{key}`: {msg}");
            }
        }
        msg.push_str(&format!(" (in {place})"));
    }
    format!("{msg} (line {line_no}, column {col})")
}

/// The table the byte at `pos` belongs to, as a user would name it: `[run]`,
/// `[[variants]] #2 (name = "thp")`, `the top level`. When `pos` is inside a header
/// (`[suites.bogus]`), the key in error is the header's own segment, so the place is the
/// table that header extends (`[suites]`).
fn table_at(text: &str, pos: usize, line_start: usize) -> String {
    let line = text[line_start..].lines().next().unwrap_or("").trim_start();
    if line.starts_with('[') {
        let before = text[line_start..pos].trim_start().trim_start_matches('[');
        let parent = before.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
        if parent.is_empty() {
            return "the top level".into();
        }
        return format!("[{parent}]");
    }
    let headers: Vec<(usize, &str)> = text[..line_start]
        .lines()
        .scan(0usize, |off, l| {
            let at = *off;
            *off += l.len() + 1;
            Some((at, l.trim()))
        })
        .filter(|(_, l)| l.starts_with('[') && l.contains(']'))
        .collect();
    let Some(&(at, header)) = headers.last() else {
        return "the top level".into();
    };
    if let Some(rest) = header.strip_prefix("[[") {
        let name = rest.split("]]").next().unwrap_or(rest).trim();
        let nth = headers
            .iter()
            .filter(|(_, h)| {
                h.strip_prefix("[[")
                    .and_then(|r| r.split("]]").next())
                    .is_some_and(|n| n.trim() == name)
            })
            .count();
        // The entry's `name = "..."`, wherever it sits in its block.
        let block = text[at..]
            .lines()
            .skip(1)
            .take_while(|l| !l.trim_start().starts_with('['));
        let label = block
            .filter_map(|l| l.trim().strip_prefix("name"))
            .filter_map(|r| r.trim_start().strip_prefix('='))
            .map(|v| v.trim().to_string())
            .next();
        return match label {
            Some(l) => format!("[[{name}]] #{nth} (name = {l})"),
            None => format!("[[{name}]] #{nth}"),
        };
    }
    header[..=header.find(']').unwrap_or(header.len() - 1)].to_string()
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn unknown_key_is_named_with_its_table() {
        let e = parse("[suites.timer]\nsampels = 5\n").unwrap_err();
        assert!(e.contains("unknown field `sampels`"), "{e}");
        assert!(e.contains("[suites.timer]"), "{e}");
        assert!(e.contains("expected `samples`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = parse("[run]\naccel = \"kvm\"\nmemroy_mib = 1\n").unwrap_err();
        assert!(e.contains("`memroy_mib`") && e.contains("[run]"), "{e}");
        let e = parse("[sutes.timer]\n").unwrap_err();
        assert!(e.contains("`sutes`"), "{e}");
    }

    #[test]
    fn messages_name_the_right_table() {
        let e = parse("[suites.kmalloc]\n[[variants]]\nname = \"a\"\n[[variants]]\nname = \"thp\"\nbogus = 1\n")
            .unwrap_err();
        assert!(e.contains("in [[variants]] #2 (name = \"thp\")"), "{e}");
        let e = parse("[[variants]]\nmemory_mib = 5\nname = \"x\"\n").unwrap_err();
        assert!(e.contains("[[variants]] #1 (name = \"x\")"), "{e}");
        let e = parse("[run]\nboots = 1\n[suites.bogus]\n").unwrap_err();
        assert!(
            e.contains("`bogus`") && e.contains("in [suites]") && !e.contains("[run]"),
            "{e}"
        );
        let e = parse("[run]\n[sutes.timer]\n").unwrap_err();
        assert!(e.contains("`sutes`") && e.contains("the top level"), "{e}");
        let e = parse("[run]\n[gust]\ncpl = 3\n").unwrap_err();
        assert!(e.contains("`gust`") && e.contains("the top level"), "{e}");
        let e = parse("[guest]\n[suites.timer]\nsamples = \"x\"\n").unwrap_err();
        assert!(e.contains("[suites.timer]"), "{e}");
    }
}
