//! What the end-to-end tests share: a real `redis-server` per test, stand-in servers that can
//! fail on purpose, the gateway on port 0, fixtures, and polling with a deadline.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

pub mod app;
pub mod fixtures;
pub mod omni_schema;
pub mod poll;
pub mod process;
pub mod redis_server;
pub mod standin;

/// Generates one test per store for each named `async fn(StoreKind)` of the calling module.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::support::app::StoreKind::Memory).await
                }
            )*
        }
        mod redis_store {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::support::app::StoreKind::Redis).await
                }
            )*
        }
    };
}
