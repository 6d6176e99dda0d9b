//! Dispatcher side: the PostgreSQL queue, the tick, the SOAP endpoint and config pushes.
