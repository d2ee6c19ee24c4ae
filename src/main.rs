use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    return_large_blocks_to_the_kernel();
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

/// Each hashing thread needs m KiB (19 MiB by default) of Argon2 working memory while it works.
/// glibc raises its mmap threshold once the first such block is freed and from then on keeps
/// freed blocks in its arenas, so an idle server would hold one per hashing thread for good. A
/// fixed threshold keeps large blocks in mappings of their own, returned to the kernel when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks_to_the_kernel() {
    // SAFETY: mallopt only tunes the allocator; it takes the allocator's own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_kernel() {}
