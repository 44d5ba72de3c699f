//! [`UsageQuery`] as SQL over `usage_daily`, the same text for both backends but for how
//! a parameter is written: the database sums the rows and returns one per group.
use apex_costs::{GroupBy, UsageQuery, UsageRecord};

/// The sums kept from `usage_daily`, which a delete of a user's usage clears with it.
pub(crate) const KEPT_SUMS: [&str; 3] = ["usage_daily", "usage_rollup", "usage_tag_rollup"];

/// Where a query's sums are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// `usage_rollup` (migration sqlite 0008 / postgres 0004): everything but the end user
    /// and the API key.
    Rollup,
    /// `usage_tag_rollup` (0010 / 0006), the rows of one dimension (end users or API
    /// keys): day, provider, model and that name.
    Tag(GroupBy),
    /// `usage_daily`: every name.
    Daily,
}

/// The smallest kept sum that holds every name `q` keeps or filters by.
pub(crate) fn source(q: &UsageQuery) -> Source {
    if !q.needs_tags() {
        return Source::Rollup;
    }
    let mut named = q.keep.iter().chain(q.filters.iter().map(|(d, _)| d)).copied();
    let tags: Vec<GroupBy> = named.clone().filter(|d| tag_name(*d).is_some()).collect();
    let fits = named.all(|d| matches!(d, GroupBy::Day | GroupBy::Provider | GroupBy::Model) || Some(d) == tags.first().copied());
    match tags.first() {
        Some(&tag) if fits => Source::Tag(tag),
        _ => Source::Daily,
    }
}

impl Source {
    fn table(self) -> &'static str {
        match self {
            Source::Rollup => "usage_rollup",
            Source::Tag(_) => "usage_tag_rollup",
            Source::Daily => "usage_daily",
        }
    }

    /// The column holding `dim`'s names.
    fn column(self, dim: GroupBy) -> &'static str {
        match self {
            Source::Tag(tag) if tag == dim => "name",
            _ => column(dim),
        }
    }
}

/// The statement over `source` and its parameters in order (the user id first);
/// `param(n)` writes the n-th parameter (1-based) as the backend wants it.
pub(crate) fn sql(q: &UsageQuery, source: Source, param: impl Fn(usize) -> String) -> (String, Vec<String>) {
    let mut binds: Vec<String> = Vec::new();
    let next = |value: &str, binds: &mut Vec<String>| {
        binds.push(value.to_owned());
        param(binds.len() + 1)
    };
    let mut wheres = vec![format!("user_id = {}", param(1))];
    if let Source::Tag(tag) = source {
        // A fixed name, not user text.
        wheres.push(format!("dimension = '{}'", tag_name(tag).unwrap_or_default()));
    }
    if let Some(from) = &q.from {
        wheres.push(format!("day >= {}", next(from, &mut binds)));
    }
    if let Some(to) = &q.to {
        wheres.push(format!("day <= {}", next(to, &mut binds)));
    }
    for (dim, names) in &q.filters {
        if names.is_empty() {
            // No name can match an empty set of alternatives.
            wheres.push("1 = 0".to_owned());
            continue;
        }
        let list: Vec<String> = names.iter().map(|n| next(n, &mut binds)).collect();
        wheres.push(format!("{} IN ({})", source.column(*dim), list.join(", ")));
    }
    let names: Vec<String> = DIMENSIONS
        .iter()
        .map(|&dim| {
            let value = if q.keeps(dim) { source.column(dim) } else { "''" };
            format!("{value} AS {}", column(dim))
        })
        .collect();
    let group: String = DIMENSIONS.iter().filter(|&&dim| q.keeps(dim)).map(|&dim| format!("{}, ", source.column(dim))).collect();
    let sql = format!(
        "SELECT {names}, \
         CAST(SUM(requests) AS BIGINT) AS requests, \
         CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
         CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
         CAST(SUM(cached_input_tokens) AS BIGINT) AS cached_input_tokens, \
         CAST(SUM(cache_write_tokens) AS BIGINT) AS cache_write_tokens, \
         CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens, \
         CAST(SUM(repeat_requests) AS BIGINT) AS repeat_requests, \
         CASE WHEN billed THEN CAST(SUM(cost_micros) AS BIGINT) END AS cost \
         FROM {table} WHERE {wheres} GROUP BY {group}billed",
        names = names.join(", "),
        table = source.table(),
        wheres = wheres.join(" AND "),
    );
    (sql, binds)
}

/// Every dimension, in the order results are sorted by.
const DIMENSIONS: [GroupBy; 8] = [
    GroupBy::Day,
    GroupBy::Provider,
    GroupBy::Model,
    GroupBy::Feature,
    GroupBy::Project,
    GroupBy::User,
    GroupBy::ApiKey,
    GroupBy::Environment,
];

/// The column of `dim` (a fixed name: no user text reaches the statement but as a
/// parameter).
fn column(dim: GroupBy) -> &'static str {
    match dim {
        GroupBy::Day => "day",
        GroupBy::Provider => "provider",
        GroupBy::Model => "model",
        GroupBy::Feature => "feature",
        GroupBy::Project => "project",
        GroupBy::User => "end_user",
        GroupBy::ApiKey => "api_key",
        GroupBy::Environment => "environment",
    }
}

/// Sorts the rows as [`apex_costs::aggregate`] does (byte order of the names, unbilled
/// first), whatever the database's collation.
pub(crate) fn sorted(mut rows: Vec<UsageRecord>) -> Vec<UsageRecord> {
    fn key(r: &UsageRecord) -> ([&str; 8], bool) {
        (
            [&r.day, &r.provider, &r.model, &r.feature, &r.project, &r.user, &r.api_key, &r.environment].map(|s| s.as_str()),
            r.cost.is_some(),
        )
    }
    rows.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    rows
}

/// The `dimension` usage_tag_rollup keeps `dim` under, for end users and API keys.
pub(crate) fn tag_name(dim: GroupBy) -> Option<&'static str> {
    match dim {
        GroupBy::User => Some("user"),
        GroupBy::ApiKey => Some("api_key"),
        _ => None,
    }
}

/// The distinct non-empty names of `dim` (`user`, `tag`: how the user id and the dimension
/// are written as parameters): end users and API keys from usage_tag_rollup, the rest from
/// the rollup.
pub(crate) fn names_sql(dim: GroupBy, user: &str, tag: &str) -> String {
    match tag_name(dim) {
        Some(_) => {
            format!("SELECT DISTINCT name FROM usage_tag_rollup WHERE user_id = {user} AND dimension = {tag} AND name <> ''")
        }
        None => {
            let column = column(dim);
            format!("SELECT DISTINCT {column} FROM usage_rollup WHERE user_id = {user} AND {column} <> ''")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_reads_the_smallest_kept_sum_that_holds_its_names() {
        let keep = |keep: &[GroupBy]| UsageQuery { keep: keep.to_vec(), ..UsageQuery::default() };
        let filtered = |dim: GroupBy, kept: &[GroupBy]| UsageQuery { filters: vec![(dim, vec!["x".into()])], ..keep(kept) };
        assert_eq!(source(&UsageQuery::rollup()), Source::Rollup);
        assert_eq!(source(&filtered(GroupBy::Feature, &[GroupBy::Day])), Source::Rollup);
        assert_eq!(source(&keep(&[GroupBy::Day, GroupBy::Model, GroupBy::User])), Source::Tag(GroupBy::User));
        assert_eq!(source(&filtered(GroupBy::ApiKey, &[GroupBy::Provider])), Source::Tag(GroupBy::ApiKey));
        assert_eq!(source(&filtered(GroupBy::User, &[GroupBy::Day, GroupBy::Model, GroupBy::User])), Source::Tag(GroupBy::User));
        // A second tag, or a name the tag sums drop, needs every row.
        assert_eq!(source(&keep(&[GroupBy::User, GroupBy::ApiKey])), Source::Daily);
        assert_eq!(source(&filtered(GroupBy::User, &[GroupBy::ApiKey])), Source::Daily);
        assert_eq!(source(&filtered(GroupBy::Feature, &[GroupBy::User])), Source::Daily);
        assert_eq!(source(&keep(&[GroupBy::Environment, GroupBy::ApiKey])), Source::Daily);

        let (sql, binds) =
            sql(&filtered(GroupBy::User, &[GroupBy::Day, GroupBy::User]), Source::Tag(GroupBy::User), |n| format!("${n}"));
        assert!(sql.contains("FROM usage_tag_rollup WHERE user_id = $1 AND dimension = 'user' AND name IN ($2)"), "{sql}");
        assert!(sql.contains("name AS end_user") && sql.contains("GROUP BY day, name, billed"), "{sql}");
        assert_eq!(binds, ["x"]);
    }
}
