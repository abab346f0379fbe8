//! "Did you mean": the existing vault paths closest to one that was not
//! found, by edit distance. Paths only: a value is never looked at.

/// The existing paths (at most 3) closest to `wanted`, closest first (ties
/// in the order given), among those within a few edits of it: a quarter of
/// its length, at least one. Case is ignored in the distance, so a path
/// typed in the wrong case is found; none is suggested when nothing is
/// that close.
pub fn closest_paths<'a>(wanted: &str, existing: &'a [String]) -> Vec<&'a str> {
    let limit = (wanted.chars().count() / 4).max(1);
    let wanted = wanted.to_lowercase();
    let mut near: Vec<(usize, &str)> = existing
        .iter()
        .map(|path| (edit_distance(&wanted, &path.to_lowercase()), path.as_str()))
        .filter(|&(distance, _)| distance <= limit)
        .collect();
    near.sort_by_key(|&(distance, _)| distance);
    near.into_iter().take(3).map(|(_, path)| path).collect()
}

/// Levenshtein distance over characters: insertions, deletions and
/// substitutions each count one.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_each_edit_once() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("PASWORD", "PASSWORD"), 1);
        assert_eq!(edit_distance("ab", "ba"), 2);
    }

    #[test]
    fn the_closest_few_are_suggested_and_far_ones_never() {
        let existing: Vec<String> = [
            "SNOWFLAKE.TRANSFORM.USERNAME",
            "SNOWFLAKE.TRANSFORM.PASSWORD",
            "SNOWFLAKE.LOAD.PASSWORD",
            "DB.PASS",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            closest_paths("SNOWFLAKE.TRANSFORM.PASWORD", &existing),
            ["SNOWFLAKE.TRANSFORM.PASSWORD"]
        );
        assert_eq!(
            closest_paths("snowflake.transform.password", &existing),
            ["SNOWFLAKE.TRANSFORM.PASSWORD"]
        );
        assert_eq!(
            closest_paths("SNOWFLAKE.LOAD.PASSWORD", &existing),
            ["SNOWFLAKE.LOAD.PASSWORD"]
        );
        assert_eq!(
            closest_paths(
                "DB.PAS",
                &["DB.PASS".into(), "DB.USER".into(), "DB.PAS2".into()]
            ),
            ["DB.PASS", "DB.PAS2"],
            "ties in the vault's order"
        );
        assert!(closest_paths("AWS.KEY", &existing).is_empty());
        assert!(closest_paths("A", &["B.C".to_string()]).is_empty());
    }
}
