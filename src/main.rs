use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .with_writer(std::io::stderr)
        .init();
    let cli = latchkey::cli::Cli::parse();
    let code = match latchkey::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("latchkey: {error:#}");
            1
        }
    };
    std::process::exit(code);
}
