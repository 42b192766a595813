//! A small SQL text builder: placeholders per backend, and the few
//! expressions that differ between SQLite and PostgreSQL.

use sea_orm::{DbBackend, Statement, Value};

/// The `i`-th (from 1) bound parameter's mark.
pub fn placeholder(backend: DbBackend, i: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${i}"),
        _ => "?".to_owned(),
    }
}

pub struct Sql {
    pub backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub fn new(backend: DbBackend) -> Sql {
        Sql {
            backend,
            text: String::with_capacity(1024),
            values: Vec::new(),
        }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Appends a bound parameter.
    pub fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        self.values.push(v.into());
        let mark = placeholder(self.backend, self.values.len());
        self.text.push_str(&mark);
        self
    }

    /// Appends `(p1, p2, …)` for a list of values.
    pub fn bind_list<V: Into<Value>>(&mut self, vs: impl IntoIterator<Item = V>) -> &mut Self {
        self.text.push('(');
        for (i, v) in vs.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self.text.push(')');
        self
    }

    /// Fractional hours from `a` to `b` (two timestamp expressions).
    pub fn hours(&self, a: &str, b: &str) -> String {
        match self.backend {
            DbBackend::Postgres => {
                // date_part is float8 (EXTRACT is numeric since PostgreSQL 14: slower to sort).
                format!("(date_part('epoch', {b} - {a}) / 3600)")
            }
            _ => format!("((julianday({b}) - julianday({a})) * 24.0)"),
        }
    }

    /// The UTC day, ISO week (Monday), month or quarter of a timestamp: the
    /// bucket's start (PostgreSQL: a timestamp; SQLite: `YYYY-MM-DD`).
    pub fn bucket(&self, interval: &str, ts: &str) -> String {
        match self.backend {
            DbBackend::Postgres => {
                // A timestamp (cheap to group by); `series` formats the groups.
                format!("date_trunc('{interval}', {ts} AT TIME ZONE 'UTC')")
            }
            _ => match interval {
                "day" => format!("date({ts})"),
                "week" => format!("date({ts}, '-6 days', 'weekday 1')"),
                "month" => format!("strftime('%Y-%m-01', {ts})"),
                _ => format!(
                    "printf('%s-%02d-01', strftime('%Y', {ts}), ((CAST(strftime('%m', {ts}) AS INTEGER) - 1) / 3) * 3 + 1)"
                ),
            },
        }
    }

    /// Median of `v` per `k` over a relation `rel` with those two columns
    /// (the mean of the two middle values for an even count), and `n`, how
    /// many values: `percentile_cont` on PostgreSQL, window functions on
    /// SQLite.
    pub fn median_by(&self, rel: &str) -> String {
        match self.backend {
            DbBackend::Postgres => format!(
                "SELECT k, CAST(COUNT(*) AS BIGINT) AS n, \
                 CAST(percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS DOUBLE PRECISION) AS median FROM ({rel}) AS src GROUP BY k"
            ),
            _ => median_by(rel),
        }
    }

    /// Binds a `YYYY-MM-DD` text as a date column's value (PostgreSQL
    /// casts it; SQLite keeps dates as that text).
    pub fn bind_date(&mut self, d: &str) -> &mut Self {
        if self.backend == DbBackend::Postgres {
            self.push("CAST(").bind(d.to_owned()).push(" AS DATE)")
        } else {
            self.bind(d.to_owned())
        }
    }

    pub fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// `AVG` of the middle value(s) of `v` per `k`, from a relation `rel`
/// with columns `k` and `v`: the median, the mean of the two middle values
/// for an even count, and `n`, how many values. Works on both backends
/// (window functions).
pub fn median_by(rel: &str) -> String {
    format!(
        "SELECT k, CAST(MAX(cnt) AS BIGINT) AS n, CAST(AVG(v) AS DOUBLE PRECISION) AS median FROM (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v) AS rn, \
         COUNT(*) OVER (PARTITION BY k) AS cnt FROM ({rel}) AS src) AS ranked \
         WHERE rn IN ((cnt + 1) / 2, (cnt + 2) / 2) GROUP BY k"
    )
}

impl Sql {
    /// The text and values so far (to nest this query inside another).
    pub fn into_parts(self) -> (String, Vec<Value>) {
        (self.text, self.values)
    }

    /// Appends text whose placeholders were numbered from 1 with `values`
    /// (a nested query), renumbering them after this query's own.
    pub fn push_with(&mut self, text: &str, values: Vec<Value>) -> &mut Self {
        let offset = self.values.len();
        let text = match self.backend {
            DbBackend::Postgres if offset > 0 => renumber(text, offset),
            _ => text.to_owned(),
        };
        self.text.push_str(&text);
        self.values.extend(values);
        self
    }
}

/// `$n` → `$(n + offset)` in PostgreSQL text.
fn renumber(text: &str, offset: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            let mut n = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(*d);
                chars.next();
            }
            let v: usize = n.parse().unwrap_or(0);
            out.push_str(&format!("${}", v + offset));
        } else {
            out.push(c);
        }
    }
    out
}
