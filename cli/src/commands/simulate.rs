//! `fraudlake simulate`: the handbook's generative process into the lake.

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::Args;
use fraudlake_pipeline::ingest::ingest_generated;
use fraudlake_pipeline::lake::tables::{LabelColumns, TransactionColumns};
use fraudlake_pipeline::simulate::{simulate, Drift, DriftKind, SimConfig};

use crate::config::Settings;
use crate::output::{print_rows, Format};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 5000)]
    customers: usize,
    /// Number of terminals.
    #[arg(long, default_value_t = 10000)]
    terminals: usize,
    /// Number of days to simulate.
    #[arg(long, default_value_t = 183)]
    days: u32,
    /// First day (UTC).
    #[arg(long, default_value = "2018-04-01")]
    start: NaiveDate,
    /// A customer uses terminals closer than this.
    #[arg(long, default_value_t = 5.0)]
    radius: f64,
    /// Random seed: same seed, same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Inject drift from this day on (YYYY-MM-DD).
    #[arg(long)]
    drift_from: Option<NaiveDate>,
    /// What drifts: amount-scale, new-pattern or terminal-cluster.
    #[arg(long, default_value = "amount-scale", requires = "drift_from")]
    drift_kind: DriftKind,
    /// Strength of the drift (amount multiplier).
    #[arg(long, default_value_t = 3.0, requires = "drift_from")]
    drift_factor: f64,
    /// First transaction id (to append a second simulated period without id clashes).
    #[arg(long, default_value_t = 0)]
    first_tx_id: i64,
    /// Summary format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(serde::Serialize)]
struct SimSummary {
    transactions: usize,
    frauds: usize,
    fraud_pct: f64,
    scenario_1: usize,
    scenario_2: usize,
    scenario_3: usize,
    drift_scenario_4: usize,
    added: usize,
    already_present: usize,
    generate_s: f64,
    write_s: f64,
}

pub async fn run(args: SimulateArgs, settings: &Settings) -> Result<u8> {
    let lake = settings.open_lake()?;
    let start = args
        .start
        .and_hms_opt(0, 0, 0)
        .context("bad --start")?
        .and_utc()
        .timestamp();
    let drift = match args.drift_from {
        Some(day) => {
            let from_day = (day - args.start).num_days();
            if from_day < 0 {
                return Err(crate::bad_input(format!(
                    "--drift-from {day} is before --start {}",
                    args.start
                )));
            }
            Some(Drift {
                from_day: from_day as u32,
                kind: args.drift_kind,
                factor: args.drift_factor,
            })
        }
        None => None,
    };
    let cfg = SimConfig {
        customers: args.customers,
        terminals: args.terminals,
        days: args.days,
        start_unix_secs: start,
        radius: args.radius,
        seed: args.seed,
        drift,
        first_tx_id: args.first_tx_id,
    };
    let t0 = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || simulate(&cfg))
        .await?
        .map_err(|e| fraudlake_pipeline::Error::invalid(e.to_string()))?;
    let generate_s = t0.elapsed().as_secs_f64();
    let counts = out.scenario_counts();
    let frauds = out.fraud_count();
    let n = out.len();
    let tx = TransactionColumns {
        tx_id: out.tx_id.clone(),
        tx_ts_us: out.tx_ts_us,
        customer_id: out.customer_id,
        terminal_id: out.terminal_id,
        amount: out.amount,
    };
    let labels = LabelColumns {
        tx_id: out.tx_id,
        is_fraud: out.is_fraud,
        fraud_scenario: out.fraud_scenario.into_iter().map(Some).collect(),
        labeled_at_us: out.labeled_at_us,
        provenance: Vec::new(),
    };
    let t1 = std::time::Instant::now();
    let summary =
        ingest_generated(&lake, tx, labels, &format!("simulate:seed={}", args.seed)).await?;
    let write_s = t1.elapsed().as_secs_f64();
    tracing::info!(
        transactions = n,
        frauds,
        generate_s,
        write_s,
        "simulated into {}",
        lake.root()
    );
    print_rows(
        &[SimSummary {
            transactions: n,
            frauds,
            fraud_pct: if n > 0 {
                100.0 * frauds as f64 / n as f64
            } else {
                0.0
            },
            scenario_1: counts[1],
            scenario_2: counts[2],
            scenario_3: counts[3],
            drift_scenario_4: counts[4],
            added: summary.accepted,
            already_present: summary.already_present,
            generate_s,
            write_s,
        }],
        args.format,
    )?;
    Ok(0)
}
