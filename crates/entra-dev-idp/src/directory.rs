//! The directory the IdP plays: its demo users, and their groups.

use crate::mint::guid_for;

/// The demo user in more than 200 groups: Entra leaves them out of its tokens.
pub const BIG_USER: &str = "dana";
/// How many groups the big user is in.
pub const BIG_USER_GROUPS: usize = 250;
/// The demo users: name, display name, groups (the last one's 250 groups are Graph's to tell:
/// see [`big_user_groups`]).
pub const USERS: [(&str, &str, &[&str]); 3] = [
    (
        "alice",
        "Alice Example",
        &["0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1", "5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20"],
    ),
    ("bob", "Bob Example", &["5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20"]),
    (BIG_USER, "Dana Example (250 groups)", &[]),
];

/// The groups of the user in 250 groups: the first demo user's, then 249 more.
pub fn big_user_groups() -> Vec<String> {
    let first = USERS[0].2.iter().map(|g| g.to_string());
    first.chain((0..).map(|i| guid_for(&format!("group:{i}")))).take(BIG_USER_GROUPS).collect()
}
