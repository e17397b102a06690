//! Row shapes both backends share: the same columns decode into the same records,
//! so each mapping is written once, generic over the driver's row type.

use crate::map_err;
use sqlx::{ColumnIndex, Decode, Row, Type};
use tessera_core::model::{Client, StoredKey, ThrottleState};
use tessera_core::store::StoreResult;

/// `row.try_get(column)` with the domain's error.
fn get<'r, R, T>(row: &'r R, column: &str) -> StoreResult<T>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column).map_err(map_err)
}

pub(crate) fn key_from<R>(row: &R) -> StoreResult<StoredKey>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredKey {
        kid: get(row, "kid")?,
        alg: get(row, "alg")?,
        private_der: get(row, "private_der")?,
        created_at: get(row, "created_at")?,
        activates_at: get(row, "activates_at")?,
        retired_at: get(row, "retired_at")?,
    })
}

pub(crate) fn client_from<R>(row: &R) -> StoreResult<Client>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Client {
        id: get(row, "id")?,
        name: get(row, "name")?,
        secret_hash: get(row, "secret_hash")?,
        grant_types: crate::split_grants(&get::<_, String>(row, "grant_types")?),
        first_party: get(row, "first_party")?,
        created_at: get(row, "created_at")?,
    })
}

/// A `throttle` row selected as `hits` and `ends` (window end).
pub(crate) fn throttle_from<R>(row: &R) -> StoreResult<ThrottleState>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let hits: i64 = get(row, "hits")?;
    Ok(ThrottleState {
        hits: hits.clamp(0, u32::MAX as i64) as u32,
        window_ends_at: get(row, "ends")?,
    })
}
