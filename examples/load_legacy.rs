//! Loads the seed migration's legacy tables into a database of your own, for trying switchyard
//! by hand (for example against `docker compose up`):
//!
//! ```text
//! cargo run --release --example load_legacy -- postgres://postgres@127.0.0.1:54321/postgres 0.1
//! ```

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: load_legacy <postgres url> [scale factor, default 0.1]")?;
    let scale: f64 = args.next().map_or(Ok(0.1), |s| s.parse())?;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let counts = switchyard::demo::generator::load_legacy(&client, scale).await?;
    println!(
        "loaded {} company_projects, {} company_services, {} vortex_items",
        counts.company_projects, counts.company_services, counts.vortex_items
    );
    Ok(())
}
