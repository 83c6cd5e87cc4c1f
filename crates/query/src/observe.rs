//! What the Flight SQL service reports about each statement it answers, to an observer the
//! data node provides (its `/metrics`): this crate knows nothing of the data node's metrics.
//!
//! A statement is reported once, when it is answered: DDL and a script's answer when they run
//! (at planning, `GetFlightInfo` or `CreatePreparedStatement`); a query when its `DoGet`
//! stream ends, or at planning if it fails there. A query's duration is its `DoGet`, from the
//! call to its last batch sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow_flight::FlightData;
use futures::Stream;
use tonic::{Code, Status};

/// Told of every statement answered.
pub trait QueryObserver: Send + Sync {
    fn answered(&self, kind: StatementKind, outcome: Outcome, took: Duration);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// SQL for DataFusion, or the select a script translates to.
    Query,
    Ddl,
    /// A DolphinDB script answered by its own evaluation.
    Script,
}

impl StatementKind {
    pub fn name(self) -> &'static str {
        match self {
            StatementKind::Query => "query",
            StatementKind::Ddl => "ddl",
            StatementKind::Script => "script",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed(Code),
    /// The client went away before the last batch.
    Cancelled,
}

impl Outcome {
    pub fn of<T>(result: &Result<T, Status>) -> Self {
        match result {
            Ok(_) => Outcome::Ok,
            Err(s) => Outcome::Failed(s.code()),
        }
    }
}

/// One statement being answered: reported once, as `Cancelled` if dropped unreported.
pub(crate) struct Answering {
    observer: Arc<dyn QueryObserver>,
    kind: StatementKind,
    started: Instant,
    reported: bool,
}

impl Answering {
    pub(crate) fn new(observer: &Arc<dyn QueryObserver>, kind: StatementKind) -> Self {
        Self {
            observer: Arc::clone(observer),
            kind,
            started: Instant::now(),
            reported: false,
        }
    }

    pub(crate) fn report(mut self, outcome: Outcome) {
        self.report_once(outcome);
    }

    /// Not answered yet after all: reported by whatever answers it.
    pub(crate) fn dismiss(mut self) {
        self.reported = true;
    }

    fn report_once(&mut self, outcome: Outcome) {
        if !self.reported {
            self.reported = true;
            self.observer
                .answered(self.kind, outcome, self.started.elapsed());
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.report_once(Outcome::Cancelled);
    }
}

type Batches = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// A query's `DoGet` stream, reporting when it ends: `Ok` after its last batch, the code of
/// the first error, `Cancelled` if dropped before either.
pub(crate) struct ObservedStream {
    inner: Batches,
    answering: Option<Answering>,
}

impl ObservedStream {
    pub(crate) fn new(inner: Batches, answering: Answering) -> Self {
        Self {
            inner,
            answering: Some(answering),
        }
    }
}

impl Stream for ObservedStream {
    type Item = Result<FlightData, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        let outcome = match &next {
            Poll::Ready(None) => Some(Outcome::Ok),
            Poll::Ready(Some(Err(s))) => Some(Outcome::Failed(s.code())),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => None,
        };
        if let Some(outcome) = outcome
            && let Some(answering) = self.answering.take()
        {
            answering.report(outcome);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::StreamExt;

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(StatementKind, Outcome)>>);

    impl QueryObserver for Seen {
        fn answered(&self, kind: StatementKind, outcome: Outcome, _: Duration) {
            self.0.lock().unwrap().push((kind, outcome));
        }
    }

    fn stream(items: Vec<Result<FlightData, Status>>) -> Batches {
        Box::pin(futures::stream::iter(items))
    }

    #[tokio::test]
    async fn a_stream_reports_its_end_its_first_error_or_being_dropped_once() {
        let seen = Arc::new(Seen::default());
        let observer: Arc<dyn QueryObserver> = seen.clone();
        let query = || Answering::new(&observer, StatementKind::Query);

        let ok = ObservedStream::new(stream(vec![Ok(FlightData::default())]), query());
        assert_eq!(ok.count().await, 1);
        let failed = vec![Err(Status::internal("x")), Err(Status::aborted("y"))];
        let failed = ObservedStream::new(stream(failed), query());
        assert_eq!(failed.count().await, 2);
        let mut dropped = ObservedStream::new(stream(vec![Ok(FlightData::default())]), query());
        assert!(dropped.next().await.is_some());
        drop(dropped);
        query().report(Outcome::Failed(Code::InvalidArgument));

        let q = StatementKind::Query;
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                (q, Outcome::Ok),
                (q, Outcome::Failed(Code::Internal)),
                (q, Outcome::Cancelled),
                (q, Outcome::Failed(Code::InvalidArgument)),
            ]
        );
    }
}
