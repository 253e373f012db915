//! The walk of an Aliyun CLI profile chain (`ChainableRamRoleArn` profiles and their
//! `source_profile`s): the guest follows it to get credentials, the host to find the token
//! files to share. One walk, one limit ([`MAX_PROFILE_CHAIN`]).

use crate::MAX_PROFILE_CHAIN;

/// Why a chain was not followed to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileChainError {
    /// `chain` then names `again`, a profile already in it.
    Loop { chain: Vec<String>, again: String },
    /// `chain` is [`MAX_PROFILE_CHAIN`] long and names one more.
    TooDeep { chain: Vec<String> },
}

impl ProfileChainError {
    /// The profiles walked before the walk stopped.
    pub fn chain(&self) -> &[String] {
        match self {
            ProfileChainError::Loop { chain, .. } | ProfileChainError::TooDeep { chain } => chain,
        }
    }
}

/// The profile names from `start`: `source_of(name)` gives the profile each one chains to
/// (a `ChainableRamRoleArn` profile's `source_profile`), or `None` where the chain ends.
pub fn profile_chain(
    start: &str,
    mut source_of: impl FnMut(&str) -> Option<String>,
) -> Result<Vec<String>, ProfileChainError> {
    let mut chain: Vec<String> = Vec::new();
    let mut name = start.to_string();
    loop {
        if chain.contains(&name) {
            return Err(ProfileChainError::Loop { chain, again: name });
        }
        if chain.len() >= MAX_PROFILE_CHAIN {
            return Err(ProfileChainError::TooDeep { chain });
        }
        let next = source_of(&name);
        chain.push(name);
        match next {
            Some(n) => name = n,
            None => return Ok(chain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(links: &[(&str, &str)], start: &str) -> Result<Vec<String>, ProfileChainError> {
        profile_chain(start, |n| {
            links
                .iter()
                .find(|(from, _)| *from == n)
                .map(|(_, to)| to.to_string())
        })
    }

    #[test]
    fn chains_end_loop_or_go_too_deep() {
        assert_eq!(walk(&[("a", "b")], "a").unwrap(), ["a", "b"]);
        assert_eq!(
            walk(&[("a", "b"), ("b", "a")], "a").unwrap_err(),
            ProfileChainError::Loop {
                chain: vec!["a".into(), "b".into()],
                again: "a".into()
            }
        );
        let deep = [("1", "2"), ("2", "3"), ("3", "4"), ("4", "5"), ("5", "6")];
        let e = walk(&deep, "1").unwrap_err();
        assert_eq!(e.chain().len(), MAX_PROFILE_CHAIN);
        assert!(matches!(e, ProfileChainError::TooDeep { .. }));
    }
}
