//! The HTTP handlers: small async functions with typed extractors over [`AppState`]. Scoring
//! takes the online-state lock to judge a transaction (new, a retry, a conflicting tx_id; its
//! event time) and to compute and store its features, and briefly again to keep its answer for
//! retries; the models run outside it on the atomically loaded [`Models`] (the champion, and
//! while a rollout runs the canary and the shadow).

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use fraudlake_features::online::clock::Ahead;
use fraudlake_features::online::redis_store::StoredAs;
use fraudlake_features::{feature_rows, Answer, OnlineEngine, Seen, Timing, Transaction};
use fraudlake_model::rollout::Role;

use super::api::*;
use super::auth::{AdminScope, Caller, LabelScope, ScoreScope};
use super::engines::OtherRows;
use super::error::{ApiError, ErrorBody};
use super::json::{explain_flag, Json};
use super::models::{ModelScore, Models, Scores};
use super::state::{Scorer, SharedState};
use super::writer::{RoleScores, Scored};

fn decide(state: &SharedState, p: f64) -> Decision {
    if p >= state.thresholds.decline {
        Decision::Decline
    } else if p >= state.thresholds.review {
        Decision::Review
    } else {
        Decision::Approve
    }
}

/// What the online state made of one transaction of a request.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// New: admitted by event time, stored in the online state, queued for the lake.
    Fresh(Timing),
    /// The same transaction again: nothing stored or written; the answer given before, once
    /// it was recorded (a retry racing its original, one through another replica, or one of
    /// a transaction loaded from the lake at start-up, is scored again from its recomputed
    /// features).
    Retry(Option<Answer>),
    /// Recorded in the shared store before, but not by this process (through another
    /// replica, maybe one killed before it answered or committed): answered from its
    /// recomputed features and queued for the lake again, which drops it if it holds it.
    Recorded,
    /// New, but the shared online store failed and `--on-store-failure open`: scored from the
    /// transaction alone (no history), not stored in the online state, queued for the lake.
    Degraded(Timing),
}

fn conflict(state: &SharedState, at: &str, tx_id: i64, field: &str) -> ApiError {
    state
        .metrics
        .tx_id_reuse
        .with_label_values(&["conflict"])
        .inc();
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!(
            "{at}tx_id: {tx_id} was already scored with a different {field}; a retry must \
             repeat the same transaction, a new transaction needs a new tx_id"
        ),
    )
}

/// Judges `txs` against what this process remembers: a tx_id remembered with the same body
/// is a retry (its stored form replaces it), with another body the request is refused (409);
/// new transactions are admitted by event time (422 when too far ahead of the watermark, or
/// clamped).
fn judge(
    state: &SharedState,
    engine: &mut OnlineEngine,
    txs: &mut [Transaction],
    at: &impl Fn(usize) -> String,
) -> Result<Vec<Outcome>, ApiError> {
    let metrics = &state.metrics;
    let mut outcomes = Vec::with_capacity(txs.len());
    let mut fresh = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter_mut().enumerate() {
        match engine.seen(tx) {
            Seen::New => {
                fresh.push(i);
                outcomes.push(Outcome::Fresh(Timing::OnTime));
            }
            Seen::Retry { stored, answer } => {
                *tx = stored;
                outcomes.push(Outcome::Retry(answer));
            }
            Seen::Conflict { field } => return Err(conflict(state, &at(i), tx.tx_id, field)),
        }
    }
    if !fresh.is_empty() {
        let mut new: Vec<Transaction> = fresh.iter().map(|&i| txs[i]).collect();
        let jumps = engine.watermark_jumps();
        let admitted = engine.admit(&mut new);
        let jumped = engine.watermark_jumps() - jumps;
        if jumped > 0 {
            metrics
                .event_time
                .with_label_values(&["watermark_jump"])
                .inc_by(jumped);
        }
        let timings = admitted.map_err(|a| {
            metrics
                .event_time
                .with_label_values(&["refused_ahead"])
                .inc();
            ahead_error(&at(fresh[a.index]), &a)
        })?;
        for ((&i, tx), timing) in fresh.iter().zip(new).zip(timings) {
            txs[i] = tx;
            outcomes[i] = Outcome::Fresh(timing);
            match timing {
                Timing::OnTime => {}
                Timing::Late => metrics.event_time.with_label_values(&["late"]).inc(),
                Timing::Clamped { .. } => metrics.event_time.with_label_values(&["clamped"]).inc(),
            }
        }
    }
    Ok(outcomes)
}

/// After the state took `txs`: clamped times remembered for retries, retries counted,
/// gauges updated.
fn after_apply(
    state: &SharedState,
    engine: &mut OnlineEngine,
    txs: &[Transaction],
    outcomes: &[Outcome],
) {
    for (tx, outcome) in txs.iter().zip(outcomes) {
        match outcome {
            Outcome::Fresh(Timing::Clamped { requested_ts_us }) => {
                engine.record_requested_ts(tx.tx_id, *requested_ts_us);
            }
            Outcome::Retry(_) | Outcome::Recorded => state
                .metrics
                .tx_id_reuse
                .with_label_values(&["replayed"])
                .inc(),
            _ => {}
        }
    }
    if state.shared.is_none() {
        state.metrics.entities.set(engine.entities() as i64);
    }
    if let Some(w) = engine.watermark_ns() {
        state.metrics.watermark.set(w as f64 / 1e9);
    }
}

/// Each transaction's rows of the engines of other feature sets, from each engine's rows.
fn per_transaction(n: usize, engines: Vec<(std::sync::Arc<str>, Vec<Vec<f64>>)>) -> Vec<OtherRows> {
    let mut out: Vec<OtherRows> = (0..n).map(|_| Vec::with_capacity(engines.len())).collect();
    for (sha256, rows) in engines {
        for (other, row) in out.iter_mut().zip(rows) {
            other.push((sha256.clone(), row));
        }
    }
    out
}

/// Features for `txs` in order (each seeing the ones before), from the in-memory state or
/// the shared store, and from the engines of other feature sets (in-memory state only; see
/// [`super::engines`]). `at(i)` names item `i` in messages.
async fn features(
    state: &SharedState,
    txs: &mut [Transaction],
    at: impl Fn(usize) -> String,
) -> Result<(Vec<Vec<f64>>, Vec<OtherRows>, Vec<Outcome>), ApiError> {
    let Some(shared) = state.shared.as_ref() else {
        let mut engine = state.engine.lock();
        let outcomes = judge(state, &mut engine, txs, &at)?;
        let rows = engine.score_rows(txs)?;
        // Every engine takes the same transactions in the same order, under the main lock.
        let others = state.engines.apply(txs);
        after_apply(state, &mut engine, txs, &outcomes);
        drop(engine);
        return Ok((rows, per_transaction(txs.len(), others), outcomes));
    };
    let requested: Vec<Transaction> = txs.to_vec();
    let (mut outcomes, unlabeled, fraud) = {
        let mut engine = state.engine.lock();
        let outcomes = judge(state, &mut engine, txs, &at)?;
        let unlabeled = engine.writes_for(txs, false)?;
        let fraud = engine.writes_for(txs, true)?;
        (outcomes, unlabeled, fraud)
    };
    state.metrics.store.round_trips.inc();
    let stored = match shared
        .store
        .score(txs, &requested, &unlabeled, &fraud)
        .await
    {
        Ok(stored) => stored,
        Err(e) => {
            shared.failed(state, &e);
            if !shared.fail_open {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "online_store_unavailable",
                    e.to_string(),
                ));
            }
            tracing::warn!(error = %e, "online store failed: scoring without history (degraded)");
            let engine = state.engine.lock();
            let mut batches = Vec::with_capacity(txs.len());
            for (tx, outcome) in txs.iter().zip(outcomes.iter_mut()) {
                batches.push(engine.features_alone(tx)?);
                if let Outcome::Fresh(timing) = *outcome {
                    *outcome = Outcome::Degraded(timing);
                    state.metrics.store.degraded.inc();
                }
            }
            drop(engine);
            let batch =
                deltalake::arrow::compute::concat_batches(&state.plan.output_schema, &batches)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
            return Ok((
                feature_rows(&state.plan, &batch)?,
                per_transaction(txs.len(), Vec::new()),
                outcomes,
            ));
        }
    };
    let mut engine = state.engine.lock();
    let mut batches = Vec::with_capacity(txs.len());
    let mut applied = Vec::with_capacity(txs.len());
    for (i, s) in stored.iter().enumerate() {
        match s.stored_as {
            StoredAs::Conflict { field } => {
                return Err(conflict(state, &at(i), txs[i].tx_id, field));
            }
            StoredAs::Retry => {
                if let Outcome::Fresh(_) = outcomes[i] {
                    outcomes[i] = Outcome::Recorded;
                }
            }
            StoredAs::New => applied.push(txs[i]),
        }
        batches.push(engine.features_stored(&txs[i], s.is_fraud, &s.state)?);
    }
    engine.note_applied(&applied);
    after_apply(state, &mut engine, txs, &outcomes);
    drop(engine);
    let batch = deltalake::arrow::compute::concat_batches(&state.plan.output_schema, &batches)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        feature_rows(&state.plan, &batch)?,
        per_transaction(txs.len(), Vec::new()),
        outcomes,
    ))
}

/// RFC 3339 for microseconds since the epoch.
fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(
        || format!("{us} us"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

/// A duration for people: seconds, hours or days.
fn span(us: i64) -> String {
    let s = us as f64 / 1e6;
    if s >= 86_400.0 {
        format!("{:.1} days", s / 86_400.0)
    } else if s >= 3_600.0 {
        format!("{:.1} h", s / 3_600.0)
    } else {
        format!("{s:.0} s")
    }
}

fn ahead_error(at: &str, a: &Ahead) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "event_time_ahead",
        format!(
            "{at}tx_ts: {} is {} ahead of the server's event time ({}); at most \
             --max-event-skew ({}) ahead is accepted: is the sender's clock fast?",
            rfc3339(a.tx_ts_us),
            span(a.tx_ts_us - a.watermark_us),
            rfc3339(a.watermark_us),
            span(a.max_skew_ns / 1000)
        ),
    )
}

/// An answered transaction as it goes to the lake (or the scoring log). `fresh` is false for a
/// retry answered from memory: the lake has it or will, so only a durable log (which a killed
/// process may not have reached) gets it again; its consumer drops what the lake holds.
pub struct Answered {
    pub row: Scored,
    pub fresh: bool,
    /// Recorded in the shared store by another replica (see [`Outcome::Recorded`]).
    pub elsewhere: bool,
}

/// How the transaction's time was taken, from the outcome (a retry: as first answered).
fn time_flag(outcome: Outcome) -> Option<TimeFlag> {
    match outcome {
        Outcome::Fresh(Timing::OnTime)
        | Outcome::Degraded(Timing::OnTime)
        | Outcome::Retry(None)
        | Outcome::Recorded => None,
        Outcome::Fresh(Timing::Late) | Outcome::Degraded(Timing::Late) => Some(TimeFlag::Late),
        Outcome::Fresh(Timing::Clamped { .. }) | Outcome::Degraded(Timing::Clamped { .. }) => {
            Some(TimeFlag::Clamped)
        }
        Outcome::Retry(Some(a)) => TimeFlag::from_code(a.time_flag),
    }
}

/// The answer to one transaction: who decided, with which score, what it decided, and every
/// served model's score for the lake.
struct Verdict {
    decider: Decider,
    decided: ModelScore,
    decision: Decision,
    scores: RoleScores,
}

impl Verdict {
    /// The answer given before, kept for retries (only the deciding model's score is kept).
    fn remembered(a: &Answer) -> Verdict {
        let decider = Decider::from_code(a.role);
        let decided = ModelScore {
            version: a.model_version,
            score: a.risk_score,
        };
        Verdict {
            decider,
            decided,
            decision: Decision::from_code(a.decision),
            scores: RoleScores::decided_only(decider, decided),
        }
    }

    fn of(state: &SharedState, scores: Scores) -> Verdict {
        let decided = scores.decided();
        Verdict {
            decider: scores.decider,
            decided,
            decision: decide(state, decided.score),
            scores: scores.into(),
        }
    }

    fn answer(&self, time_flag: Option<TimeFlag>) -> Answer {
        Answer {
            risk_score: self.decided.score,
            model_version: self.decided.version,
            decision: self.decision.code(),
            time_flag: TimeFlag::code(time_flag),
            role: self.decider.code(),
        }
    }
}

/// Counts a scored transaction: every model's score by role, the decision acted on by who
/// decided, and what the shadow would have decided.
fn count(state: &SharedState, v: &Verdict) {
    let metrics = &state.metrics;
    let roles = [
        (Role::Champion, v.scores.champion),
        (Role::Canary, v.scores.canary),
        (Role::Shadow, v.scores.shadow),
    ];
    for (role, score) in roles {
        if let Some(s) = score {
            metrics.role(role).risk.observe(s.score);
        }
    }
    metrics.role(v.decider.role()).decided(v.decision);
    if let Some(shadow) = v.scores.shadow {
        metrics
            .role(Role::Shadow)
            .decided(decide(state, shadow.score));
    }
}

/// TreeSHAP of the deciding model: every feature in model order, and the top five (from the
/// same call's values).
fn explanation(
    scorer: &Scorer,
    row: &[f64],
) -> Result<(Vec<FeatureContribution>, Vec<FeatureContribution>), ApiError> {
    let all = scorer
        .model
        .explain(&scorer.version.record.feature_names, row)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let wire = |c: fraudlake_model::booster::Contribution| FeatureContribution {
        feature: c.feature,
        value: c.value.is_finite().then_some(c.value),
        contribution: c.contribution,
    };
    let top = fraudlake_model::booster::largest(all.clone(), 5);
    Ok((
        all.into_iter().map(wire).collect(),
        top.into_iter().map(wire).collect(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn respond(
    state: &SharedState,
    models: &Models,
    tx: &Transaction,
    row: Vec<f64>,
    others: OtherRows,
    outcome: Outcome,
    explain: bool,
    started: Instant,
) -> Result<(ScoreResponse, Answered), ApiError> {
    let time_flag = time_flag(outcome);
    let verdict = match outcome {
        Outcome::Retry(Some(a)) => Verdict::remembered(&a),
        _ => {
            let scores = models
                .score(&row, &others, tx.customer_id, &state.metrics)
                .ok_or_else(|| {
                    ApiError::internal(
                        "the model and the feature SQL disagree on the number of features",
                    )
                })?;
            state
                .metrics
                .latency
                .observe(started.elapsed().as_secs_f64());
            Verdict::of(state, scores)
        }
    };
    let scorer = models.scorer(verdict.decider);
    // The decider's feature vector (its own feature set's): explained, and the `features`
    // column of `predictions` (whose `feature_set` is the decider's).
    let row = if scorer.feature_set == models.champion.feature_set {
        row
    } else {
        others
            .into_iter()
            .find(|(sha256, _)| *sha256 == scorer.feature_set)
            .map_or(row, |(_, r)| r)
    };
    let (features, top) = if explain {
        let (all, top) = explanation(scorer, &row)?;
        (Some(all), Some(top))
    } else {
        (None, None)
    };
    let fresh = matches!(
        outcome,
        Outcome::Fresh(_) | Outcome::Degraded(_) | Outcome::Recorded
    );
    if fresh {
        // Scores and decisions of transactions, not of requests: a retry is not counted again.
        if !matches!(outcome, Outcome::Recorded) {
            count(state, &verdict);
        }
        state
            .engine
            .lock()
            .record_answer(tx.tx_id, verdict.answer(time_flag));
    }
    let answered = Answered {
        row: Scored {
            tx: *tx,
            scored_at_us: chrono::Utc::now().timestamp_micros(),
            model_version: verdict.decided.version,
            feature_set: scorer.feature_set.clone(),
            risk_score: verdict.decided.score,
            decision: verdict.decision.as_str(),
            features: row,
            roles: verdict.scores,
        },
        fresh,
        elsewhere: matches!(outcome, Outcome::Recorded),
    };
    let response = ScoreResponse {
        tx_id: tx.tx_id,
        risk_score: verdict.decided.score,
        decision: verdict.decision,
        model_version: verdict.decided.version,
        role: verdict.decider,
        feature_set: scorer.feature_set.to_string(),
        time_flag,
        scored_tx_ts: (time_flag == Some(TimeFlag::Clamped)).then(|| rfc3339(tx.tx_ts_us)),
        features,
        top_contributions: top,
        degraded: matches!(outcome, Outcome::Degraded(_)).then_some(true),
    };
    Ok((response, answered))
}

/// Hands answered transactions to the lake: to the durable scoring log when there is one (the
/// answer waits for its acknowledgement: no answer without a durable record), else to the
/// in-process writer (new ones only).
pub async fn land(state: &SharedState, answered: Vec<Answered>) -> Result<(), ApiError> {
    match state.scoring_log.as_ref() {
        None => {
            for a in answered.into_iter().filter(|a| a.fresh) {
                if a.elsewhere {
                    state.writer.scored_elsewhere(a.row);
                } else {
                    state.writer.scored(a.row);
                }
            }
            Ok(())
        }
        Some(log) => {
            let rows: Vec<Scored> = answered.into_iter().map(|a| a.row).collect();
            log.append(&rows).await.map_err(|e| {
                state.metrics.scoring_log_errors.inc();
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "scoring_log_unavailable",
                    format!(
                        "the scoring log did not acknowledge the answer, so it is not given: \
                         {e}; retrying the same transaction is safe"
                    ),
                )
            })
        }
    }
}

/// Scores transactions outside HTTP (`fraudlake stream --score`): the same judgement, features,
/// model and decision as `/score/batch`, but the caller lands the rows (with its own offsets).
/// An error refuses all of `txs`; callers that must keep going per message pass one at a time.
pub async fn score_transactions(
    state: &SharedState,
    txs: &mut [Transaction],
) -> Result<Vec<(ScoreResponse, Answered)>, ApiError> {
    let started = Instant::now();
    require_ready_to_score(state)?;
    let models = state.models.load_full();
    let (rows, others, outcomes) = features(state, txs, |_| String::new()).await?;
    txs.iter()
        .zip(rows)
        .zip(others)
        .zip(outcomes)
        .map(|(((tx, row), others), outcome)| {
            respond(state, &models, tx, row, others, outcome, false, started)
        })
        .collect()
}

/// Ready to score: as [`require_ready`], but with `--on-store-failure open` a failing shared
/// store is no reason to refuse (the answer is degraded instead).
fn require_ready_to_score(state: &SharedState) -> Result<(), ApiError> {
    match state.shared.as_ref() {
        Some(shared)
            if shared.fail_open
                && state.ready.load(std::sync::atomic::Ordering::Acquire)
                && state.scoring_log.as_ref().is_none_or(|l| l.is_up()) =>
        {
            Ok(())
        }
        _ => require_ready(state),
    }
}

fn require_ready(state: &SharedState) -> Result<(), ApiError> {
    if state.is_ready() {
        Ok(())
    } else if let Some(log) = state.scoring_log.as_ref().filter(|l| !l.is_up()) {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "scoring_log_unavailable",
            format!(
                "the scoring log ({}) is unreachable: no answer is given without a durable record",
                log.shown()
            ),
        ))
    } else if state.shared.as_ref().is_some_and(|s| !s.is_up()) {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "online_store_unavailable",
            "the shared online store is unreachable or being re-bootstrapped from the lake",
        ))
    } else {
        Err(ApiError::not_ready(
            "the online state is still loading from the lake",
        ))
    }
}

/// Score one transaction (API key with scope `score`).
#[utoipa::path(post, path = "/score", request_body = ScoreRequest, params(ScoreQuery),
    responses((status = 200, body = ScoreResponse),
        (status = 409, description = "tx_id already scored with a different body", body = ErrorBody),
        (status = 422, description = "an invalid field, or tx_ts more than --max-event-skew ahead of the server's event time", body = ErrorBody),
        (status = 400, description = "the body is not JSON, or a query parameter is invalid", body = ErrorBody),
        (status = 401, description = "no valid API key (missing, malformed, unknown or revoked)", body = ErrorBody),
        (status = 403, description = "the API key lacks this route's scope", body = ErrorBody),
        (status = 408, description = "the request took longer than --timeout-ms", body = ErrorBody),
        (status = 413, description = "the body is larger than --max-body-bytes, or more items than --max-batch", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 500, description = "the server failed (logged)", body = ErrorBody),
        (status = 503, description = "not ready: model or online state still loading", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn score(
    State(state): State<SharedState>,
    _caller: Caller<ScoreScope>,
    RawQuery(query): RawQuery,
    Json(req): Json<ScoreRequest>,
) -> Result<Json<ScoreResponse>, ApiError> {
    let started = Instant::now();
    let explain = explain_flag(query.as_deref())?;
    let mut tx = req.validate("")?;
    require_ready_to_score(&state)?;
    let models = state.models.load_full();
    let (mut rows, mut others, outcomes) =
        features(&state, std::slice::from_mut(&mut tx), |_| String::new()).await?;
    let (row, outcome) = rows
        .pop()
        .zip(outcomes.first().copied())
        .ok_or_else(|| ApiError::internal("no feature row"))?;
    let others = others.pop().unwrap_or_default();
    let (response, answered) =
        respond(&state, &models, &tx, row, others, outcome, explain, started)?;
    land(&state, vec![answered]).await?;
    Ok(Json(response))
}

/// Score transactions in order; the answers come in the same order (scope `score`).
#[utoipa::path(post, path = "/score/batch", request_body = BatchRequest, params(ScoreQuery),
    responses((status = 200, body = BatchResponse),
        (status = 409, description = "a tx_id already scored with a different body, or twice in this batch", body = ErrorBody),
        (status = 422, description = "an invalid field, or a tx_ts more than --max-event-skew ahead of the server's event time", body = ErrorBody),
        (status = 400, description = "the body is not JSON, or a query parameter is invalid", body = ErrorBody),
        (status = 401, description = "no valid API key (missing, malformed, unknown or revoked)", body = ErrorBody),
        (status = 403, description = "the API key lacks this route's scope", body = ErrorBody),
        (status = 408, description = "the request took longer than --timeout-ms", body = ErrorBody),
        (status = 413, description = "the body is larger than --max-body-bytes, or more items than --max-batch", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 500, description = "the server failed (logged)", body = ErrorBody),
        (status = 503, description = "not ready: model or online state still loading", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn score_batch(
    State(state): State<SharedState>,
    _caller: Caller<ScoreScope>,
    RawQuery(query): RawQuery,
    Json(req): Json<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    let started = Instant::now();
    let explain = explain_flag(query.as_deref())?;
    if req.transactions.len() > state.limits.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "transactions: {} items, at most {} per batch",
                req.transactions.len(),
                state.limits.max_batch
            ),
        ));
    }
    let mut txs = req
        .transactions
        .iter()
        .enumerate()
        .map(|(i, r)| r.validate(&format!("transactions[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = std::collections::HashSet::with_capacity(txs.len());
    // One tx_id names one transaction: two items with the same id conflict (409, as a reused
    // id does across requests), whether or not their bodies agree.
    if let Some(dup) = txs.iter().find(|t| !seen.insert(t.tx_id)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "transactions: tx_id {} appears twice in the batch; none of its items was applied",
                dup.tx_id
            ),
        ));
    }
    require_ready_to_score(&state)?;
    if txs.is_empty() {
        return Ok(Json(BatchResponse { results: vec![] }));
    }
    let models = state.models.load_full();
    let (rows, others, outcomes) =
        features(&state, &mut txs, |i| format!("transactions[{i}].")).await?;
    let (results, answered): (Vec<_>, Vec<_>) = txs
        .iter()
        .zip(rows)
        .zip(others)
        .zip(outcomes)
        .map(|(((tx, row), others), outcome)| {
            respond(&state, &models, tx, row, others, outcome, explain, started)
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    land(&state, answered).await?;
    Ok(Json(BatchResponse { results }))
}

/// Fraud feedback (scope `label`): lands in `labels` with the key as its source and the
/// label it replaced; updates the online delayed aggregates unless a more trusted source's
/// label says otherwise.
#[utoipa::path(post, path = "/labels", request_body = Vec<LabelRequest>,
    responses((status = 200, body = LabelResponse),
        (status = 422, description = "an invalid field", body = ErrorBody),
        (status = 400, description = "the body is not JSON, or a query parameter is invalid", body = ErrorBody),
        (status = 401, description = "no valid API key (missing, malformed, unknown or revoked)", body = ErrorBody),
        (status = 403, description = "the API key lacks this route's scope", body = ErrorBody),
        (status = 408, description = "the request took longer than --timeout-ms", body = ErrorBody),
        (status = 413, description = "the body is larger than --max-body-bytes, or more items than --max-batch", body = ErrorBody),
        (status = 415, description = "the body is not sent as application/json", body = ErrorBody),
        (status = 500, description = "the server failed (logged)", body = ErrorBody),
        (status = 503, description = "not ready: model or online state still loading", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn labels(
    State(state): State<SharedState>,
    caller: Caller<LabelScope>,
    Json(labels): Json<Vec<LabelRequest>>,
) -> Result<Json<LabelResponse>, ApiError> {
    if labels.len() > state.limits.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "{} labels, at most {} per request",
                labels.len(),
                state.limits.max_batch
            ),
        ));
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| l.tx_id < 0) {
        return Err(ApiError::field(format!(
            "[{i}].tx_id: must be >= 0, got {}",
            l.tx_id
        )));
    }
    require_ready(&state)?;
    let writer = state.writer.clone();
    let (response, _) = accept_labels(
        &state,
        &labels,
        &caller.label_source(),
        Some(&mut |row| writer.label(row)),
    )
    .await?;
    Ok(Json(response))
}

/// Judges labels by provenance and applies the ones that count to the online state (in order:
/// each sees the ones before). The rows for the `labels` table go to `land` while the label
/// book is held (so the book never forgets a label before the writer has it), or, with `None`,
/// are returned for the caller to land with its own commit (`fraudlake stream`, which then
/// calls `forget_accepted` on the book once they are in the lake).
pub async fn accept_labels(
    state: &SharedState,
    labels: &[LabelRequest],
    source: &str,
    mut land: Option<&mut (dyn FnMut(super::writer::Label) + Send)>,
) -> Result<(LabelResponse, Vec<super::writer::Label>), ApiError> {
    let now = chrono::Utc::now().timestamp_micros();
    let source = source.to_string();
    let ids: Vec<i64> = labels.iter().map(|l| l.tx_id).collect();
    // One /labels at a time: each sees the labels the one before accepted.
    let mut book = state.labels.lock().await;
    let mut current = book.current(state.registry.lake(), &ids).await?;
    let (mut applied, mut overridden) = (0, 0);
    let mut rows = Vec::with_capacity(labels.len());
    for l in labels {
        let verdict =
            super::provenance::judge(&book.policy, current.get(&l.tx_id), l.is_fraud, &source);
        if verdict.flips {
            state
                .metrics
                .label_flips
                .with_label_values(&[
                    source.as_str(),
                    if verdict.applies { "true" } else { "false" },
                ])
                .inc();
        }
        if verdict.applies {
            let changed = match state.shared.as_ref() {
                None => {
                    let mut engine = state.engine.lock();
                    let changed = engine.apply_label(l.tx_id, l.is_fraud)?;
                    // The engines of other feature sets too, under the same lock.
                    state.engines.label(l.tx_id, l.is_fraud);
                    changed
                }
                Some(shared) => {
                    state.metrics.store.round_trips.inc();
                    shared.store.label(l.tx_id, l.is_fraud).await.map_err(|e| {
                        shared.failed(state, &e);
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "online_store_unavailable",
                            format!(
                                "{e}; the labels before tx_id {} in this request were applied, \
                                     retrying the request is safe",
                                l.tx_id
                            ),
                        )
                    })?
                }
            };
            if changed {
                applied += 1;
            }
            let now_counts = super::provenance::Current {
                rank: book.policy.rank(&source),
                labeled_at_us: now,
                is_fraud: l.is_fraud,
                source: source.clone(),
            };
            current.insert(l.tx_id, now_counts.clone());
            book.accept(l.tx_id, now_counts);
        } else {
            overridden += 1;
        }
        state
            .metrics
            .feedback
            .with_label_values(&[if l.is_fraud { "true" } else { "false" }])
            .inc();
        let row = super::writer::Label {
            tx_id: l.tx_id,
            is_fraud: l.is_fraud,
            fraud_scenario: l.fraud_scenario,
            labeled_at_us: now,
            provenance: verdict.provenance,
        };
        match land.as_mut() {
            Some(land) => land(row),
            None => rows.push(row),
        }
    }
    if land.is_some() && book.is_full() {
        // The lake has them once the writer has committed: then they can be forgotten.
        state.writer.flush().await;
        book.forget_accepted();
    }
    Ok((
        LabelResponse {
            accepted: labels.len(),
            applied_online: applied,
            overridden,
        },
        rows,
    ))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        detail: None,
    })
}

/// Readiness: model and online state loaded.
#[utoipa::path(get, path = "/ready", responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn ready(State(state): State<SharedState>) -> Result<Json<Health>, ApiError> {
    require_ready(&state)?;
    Ok(Json(Health {
        status: "ready".into(),
        detail: Some(format!(
            "model version {}",
            state.models.load().champion.number()
        )),
    }))
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<SharedState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The models being served: the champion, and the canary and shadow (null when none).
#[utoipa::path(get, path = "/models/current", responses((status = 200, body = ModelInfo)))]
pub async fn current_model(State(state): State<SharedState>) -> Json<ModelInfo> {
    let models = state.models.load();
    let s = &models.champion;
    let r = &s.version.record;
    Json(ModelInfo {
        version: r.version,
        feature_set: r.feature_set.clone(),
        feature_names: r.feature_names.clone(),
        trees: s.model.num_trees(),
        loaded_at: s.loaded_at.to_rfc3339(),
        train_from: r.lineage.train_from.clone(),
        train_to: r.lineage.train_to.clone(),
        auc_roc: r.metrics.auc_roc,
        average_precision: r.metrics.average_precision,
        card_precision_at_100: r.metrics.card_precision_at_100,
        canary: models
            .canary
            .as_ref()
            .map(|(c, split)| rollout_model(c, Some(split.percent()))),
        shadow: models.shadow.as_ref().map(|s| rollout_model(s, None)),
    })
}

fn rollout_model(s: &Scorer, percent: Option<f64>) -> RolloutModel {
    let r = &s.version.record;
    RolloutModel {
        version: r.version,
        percent,
        feature_set: r.feature_set.clone(),
        trees: s.model.num_trees(),
        loaded_at: s.loaded_at.to_rfc3339(),
        train_from: r.lineage.train_from.clone(),
        train_to: r.lineage.train_to.clone(),
        average_precision: r.metrics.average_precision,
    }
}

/// Reload the champion, canary and shadow from the registry, and the API keys, now (scope
/// `admin`).
#[utoipa::path(post, path = "/admin/reload", responses((status = 200, body = ReloadResponse),
        (status = 401, description = "no valid API key (missing, malformed, unknown or revoked)", body = ErrorBody),
        (status = 403, description = "the API key lacks the admin scope", body = ErrorBody),
        (status = 408, description = "the request took longer than --timeout-ms", body = ErrorBody),
        (status = 409, description = "the champion cannot be loaded (the current model stays)", body = ErrorBody),
        (status = 500, description = "the server failed (logged)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn admin_reload(
    State(state): State<SharedState>,
    _caller: Caller<AdminScope>,
) -> Result<Json<ReloadResponse>, ApiError> {
    state.auth.refresh(state.registry.lake()).await?;
    let outcome = super::reload::reload(&state).await;
    match outcome {
        Ok((reloaded, detail)) => Ok(Json(ReloadResponse {
            reloaded,
            version: state.models.load().champion.number(),
            detail,
        })),
        Err(e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "reload_refused",
            e.to_string(),
        )),
    }
}

/// Unknown routes.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {}; see /docs",
            uri.path().chars().take(200).collect::<String>()
        ),
    )
}

/// The OpenAPI document generated from the handler types.
pub async fn openapi() -> Response {
    use utoipa::OpenApi;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_default(),
    )
        .into_response()
}

/// The API page: self-contained HTML that renders /openapi.json (no CDN, works offline).
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
