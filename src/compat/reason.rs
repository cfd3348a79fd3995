//! Why the recommender chose what it chose: one sentence each, with the data's citations.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub text: String,
    /// Rests on a value the sources mark as derived rather than read.
    pub inferred: bool,
    pub source: Vec<String>,
}

impl Reason {
    pub fn new<'a>(
        text: impl Into<String>,
        inferred: bool,
        sources: impl IntoIterator<Item = &'a String>,
    ) -> Reason {
        let mut source: Vec<String> = Vec::new();
        for s in sources {
            if !source.contains(s) {
                source.push(s.clone());
            }
        }
        Reason {
            text: text.into(),
            inferred,
            source,
        }
    }
}
