//! Retrying operations whose outcome is unknown (ConnectionLoss,
//! OperationTimeout), with exponential backoff and a deadline, like kazoo's
//! KazooRetry and Curator's RetryPolicy.
//!
//! Only idempotent operations should be retried blindly: a create that
//! failed with ConnectionLoss may have happened (retry it as "create or
//! accept NodeExists", or use a recipe that checks).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

#[derive(Debug, Clone)]
pub struct Retry {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Give up (returning the last error) after this long.
    pub deadline: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            deadline: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// Runs `op` until it succeeds, fails with a non-retryable error, or the
    /// deadline passes.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let give_up = Instant::now() + self.deadline;
        let mut delay = self.first_delay;
        loop {
            match op().await {
                Err(e) if e.is_retryable() && Instant::now() + delay < give_up => {
                    let jitter = rand::random::<u64>() % (delay.as_millis() as u64 / 2 + 1);
                    tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                    delay = (delay * 2).min(self.max_delay);
                }
                outcome => return outcome,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_proto::ErrorCode;

    #[tokio::test]
    async fn retries_connection_loss_and_stops_on_other_errors() {
        let retry = Retry {
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            deadline: Duration::from_secs(5),
        };
        let mut calls = 0;
        let outcome = retry
            .run(|| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(Error::Zk(ErrorCode::ConnectionLoss))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(outcome, Ok(3));
        let mut calls = 0;
        let outcome: Result<(), Error> = retry
            .run(|| {
                calls += 1;
                async { Err(Error::Zk(ErrorCode::NoNode)) }
            })
            .await;
        assert_eq!(outcome, Err(Error::Zk(ErrorCode::NoNode)));
        assert_eq!(calls, 1);
    }
}
