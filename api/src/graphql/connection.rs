//! Relay connections over the services' pages.

use crate::error::AppResult;
use crate::pagination::{Cursor, Page};
use async_graphql::connection::{Connection, CursorType, Edge};
use async_graphql::{Object, OutputType};
use futures_util::future::BoxFuture;
use std::sync::Arc;

type CountFn = Arc<dyn Fn() -> BoxFuture<'static, AppResult<u64>> + Send + Sync>;

/// `totalCount`, computed only when asked for.
pub struct TotalCount(CountFn);

#[Object]
impl TotalCount {
    /// Number of records matching the filter, over all pages.
    async fn total_count(&self) -> async_graphql::Result<u64> {
        Ok((self.0)().await?)
    }
}

pub type Conn<N> = Connection<Cursor, N, TotalCount>;

/// Cursors are encoded when a client reads one (an edge's `cursor`,
/// `pageInfo`'s `startCursor`/`endCursor`), not for every record of a page.
impl CursorType for Cursor {
    type Error = String;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        Cursor::decode(s, "cursor").map_err(|e| e.detail())
    }

    fn encode_cursor(&self) -> String {
        self.encode()
    }
}

/// Turns a service page into a connection of `N`.
pub fn connection<M, N, F>(
    page: Page<M>,
    count: impl Fn() -> BoxFuture<'static, AppResult<u64>> + Send + Sync + 'static,
    to_node: F,
) -> Conn<N>
where
    N: OutputType,
    F: Fn(M) -> N,
{
    let mut conn = Connection::with_additional_fields(
        page.has_previous,
        page.has_next,
        TotalCount(Arc::new(count)),
    );
    conn.edges = page
        .items
        .into_iter()
        .map(|(cursor, m)| Edge::new(cursor, to_node(m)))
        .collect();
    conn
}
