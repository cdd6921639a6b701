//! Column-aligned text for terminals: tables (`kubectl get` style) and
//! key/value views. Every cell passes through `strip_control`, so text the
//! collector relays from agents cannot move the cursor or forge lines.

use steward_core::text::strip_control;

/// Rows under upper-case headers, columns two spaces apart.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells show empty, extra ones are dropped.
    pub fn push(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .map(|cell| strip_control(&cell).into_owned())
            .collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|header| header.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let headers = self.headers.iter().map(|header| header.to_string());
        for row in std::iter::once(headers.collect::<Vec<_>>()).chain(self.rows.iter().cloned()) {
            let last = row.len().saturating_sub(1);
            let mut line = String::new();
            for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
                line.push_str(cell);
                if index < last {
                    let pad = width - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `Key:   value` lines, values aligned; empty and unknown (`-`) values
/// are left out.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .filter(|(_, value)| shown(value))
        .map(|(key, _)| key.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        if !shown(value) {
            continue;
        }
        let label = format!("{key}:");
        out.push_str(&format!(
            "{label:<width$}  {}\n",
            strip_control(value),
            width = width
        ));
    }
    out
}

fn shown(value: &str) -> bool {
    !value.is_empty() && value != "-"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_control_characters_are_dropped() {
        let mut table = Table::new(&["ID", "HOST", "STATE"]);
        table.push(vec!["1".into(), "web-1".into(), "open".into()]);
        table.push(vec!["12".into(), "db\x1b[2J".into()]);
        assert_eq!(
            table.render(),
            "ID  HOST   STATE\n1   web-1  open\n12  db[2J\n"
        );
    }

    #[test]
    fn key_values_align_and_skip_empty_values() {
        let text = key_values(&[
            ("ID", "a1".into()),
            ("Owner", String::new()),
            ("Serial", "-".into()),
            ("Hostname", "web\n1".into()),
        ]);
        assert_eq!(text, "ID:        a1\nHostname:  web 1\n");
    }
}
