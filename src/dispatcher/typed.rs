//! Statement parameters with their PostgreSQL types, so that every dispatcher query runs
//! as an unnamed statement (`query_typed`, `execute_typed`: Parse, Bind and Execute in one
//! round trip, nothing named left on the server).
//!
//! `postgres`' `query`/`execute` with an SQL string prepare a *named* statement (`s0`,
//! `s1`...) and close it later. Behind PgBouncer in transaction pooling the next
//! transaction may run on another server connection, where the name is unknown or already
//! taken by another client ("prepared statement \"s4\" already exists"). Unnamed
//! statements live only until the next Parse on the same connection, which is always
//! ours. `tests/it/pooler.rs` fails if a named statement is made.
//!
//! The type of each parameter follows from its Rust type (`String` is `text`, `i64` is
//! `int8`...), as `query` would have inferred it; SQL that needs another type casts
//! (`$1::smallint`).

use postgres::types::{ToSql, Type};

/// A value that can be sent as a parameter of an unnamed statement.
pub trait Param: ToSql + Sync {
    /// The PostgreSQL type declared for the parameter.
    fn sql_type(&self) -> Type;
    fn as_sql(&self) -> &(dyn ToSql + Sync);
}

/// The PostgreSQL type of a Rust type, as a parameter.
pub trait SqlType {
    const TYPE: Type;
}

impl<T: SqlType + ToSql + Sync> Param for T {
    fn sql_type(&self) -> Type {
        T::TYPE
    }
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        self
    }
}

macro_rules! sql_types {
    ($($rust:ty => $pg:ident),* $(,)?) => {
        $(impl SqlType for $rust { const TYPE: Type = Type::$pg; })*
    };
}

sql_types! {
    bool => BOOL,
    i16 => INT2,
    i32 => INT4,
    i64 => INT8,
    f64 => FLOAT8,
    String => TEXT,
    &str => TEXT,
    &[u8] => BYTEA,
    Vec<u8> => BYTEA,
    uuid::Uuid => UUID,
    chrono::DateTime<chrono::Utc> => TIMESTAMPTZ,
    serde_json::Value => JSONB,
    Vec<String> => TEXT_ARRAY,
    Vec<&str> => TEXT_ARRAY,
    &[&str] => TEXT_ARRAY,
    &[String] => TEXT_ARRAY,
    Vec<i64> => INT8_ARRAY,
    Vec<i32> => INT4_ARRAY,
    Vec<uuid::Uuid> => UUID_ARRAY,
}

impl<T: SqlType> SqlType for Option<T> {
    const TYPE: Type = T::TYPE;
}

impl<T: SqlType> SqlType for &T {
    const TYPE: Type = T::TYPE;
}

/// The parameters of one statement, each with its type, for `query_typed` and friends:
/// `c.query_typed(SQL, &params(&[&id, &name]))`.
pub fn params<'a>(values: &'a [&'a dyn Param]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    values.iter().map(|v| (v.as_sql(), v.sql_type())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_the_rust_types() {
        let (id, name, maybe): (i64, &str, Option<i32>) = (1, "a", None);
        let names = vec!["x".to_string()];
        let values: [&dyn Param; 4] = [&id, &name, &maybe, &names];
        let types: Vec<Type> = params(&values).into_iter().map(|(_, t)| t).collect();
        assert_eq!(
            types,
            [Type::INT8, Type::TEXT, Type::INT4, Type::TEXT_ARRAY]
        );
    }
}
