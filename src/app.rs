//! The application: state shared by every request, router assembly, the background worker
//! (email delivery, recovery deadlines, clean-up), and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::{Keys, PasswordHasher};
use crate::mail::sender::{self, MailTransport};
use crate::ratelimit::IpLimiter;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub keys: Arc<Keys>,
    pub hasher: PasswordHasher,
    pub clock: Arc<dyn Clock>,
    pub ip_limiter: Arc<IpLimiter>,
    pub mail_transport: Arc<dyn MailTransport>,
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// Connects, migrates and assembles everything a request, the CLI or the worker needs.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
        let store = Store::connect(&config.database_url).await?;
        store.migrate().await?;
        let keys = crate::keyring::load(&config, &store, clock.unix()).await?;
        let hasher = PasswordHasher::new(config.password_hash, config.hashing_threads)?;
        let mail_transport = sender::transport_for(&config)?;
        Ok(AppState {
            config: Arc::new(config),
            store,
            keys: Arc::new(keys),
            hasher,
            clock,
            ip_limiter: Arc::new(IpLimiter::default()),
            mail_transport,
            metrics: metrics_handle(),
        })
    }
}

/// The process-wide Prometheus recorder (metrics macros write to one global recorder).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Application::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let bind = config.bind;
        let state = AppState::build(config, clock).await?;
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        Ok(Application { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or_default()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and stops the worker.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = Arc::new(Notify::new());
        let worker = tokio::spawn(run_worker(self.state.clone(), stop.clone()));
        let router = crate::http::router(self.state.clone());
        axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
        stop.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
        self.state.store.close().await;
        Ok(())
    }
}

/// The background worker: delivers queued emails as soon as they are committed (or at the
/// next tick), drives recovery deadlines, and sweeps expired sessions and challenges.
async fn run_worker(state: AppState, stop: Arc<Notify>) {
    let mut last_sweep = 0;
    loop {
        if let Err(error) = sender::deliver_due(&state).await {
            tracing::warn!(error = format!("{error:#}"), "email delivery round failed");
        }
        if let Err(error) = crate::recovery::run_due(&state).await {
            tracing::warn!(error = format!("{error:#}"), "recovery round failed");
        }
        let now = state.clock.unix();
        if now - last_sweep >= 60 {
            last_sweep = now;
            if let Err(error) = sweep(&state, now).await {
                tracing::warn!(error = format!("{error:#}"), "clean-up round failed");
            }
        }
        tokio::select! {
            _ = stop.notified() => return,
            _ = state.store.mail_queued() => {}
            _ = tokio::time::sleep(state.config.background_interval) => {}
        }
    }
}

async fn sweep(state: &AppState, now: i64) -> anyhow::Result<()> {
    let mut tx = state.store.begin().await?;
    let idle_cutoff = now - state.config.session_idle_timeout.as_secs() as i64;
    crate::store::sessions::delete_expired(&mut tx, now, idle_cutoff).await?;
    crate::store::two_factor::delete_old_challenges(&mut tx, now - 3600).await?;
    crate::recovery::sweep(&mut tx, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
