//! The set of models a server scores with (issue #19, docs/rollout.md section 2): the champion,
//! and while a rollout runs, a canary that decides for a sticky share of customers and a shadow
//! that decides nothing. The set is immutable and sits behind one `ArcSwap` in the state: a
//! request loads it once and scores with it to the end, so a reload that swaps the whole set
//! never splits a request between two sets, and the old set lives until its last request ends.
//!
//! Without a canary or shadow, scoring is what it was before the rollout existed: one forest
//! evaluation, no allocation beyond the answer (the scores are `Copy`).
//!
//! The champion scores the main engine's feature row; a canary or shadow trained on another
//! feature set scores the row of its own feature set's engine (see [`super::engines`]).

use std::sync::Arc;
use std::time::Instant;

use fraudlake_model::rollout::Role;

use super::api::Decider;
use super::engines::OtherRows;
use super::metrics::{Metrics, RoleSeries};
use super::rollout::{route, CanarySplit};
use super::state::Scorer;

/// The models being served.
pub struct Models {
    pub champion: Arc<Scorer>,
    /// The canary and its share of customers.
    pub canary: Option<(Arc<Scorer>, CanarySplit)>,
    pub shadow: Option<Arc<Scorer>>,
}

/// One model's score of a transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelScore {
    pub version: i64,
    pub score: f64,
}

/// Every served model's score of one transaction, and who decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub decider: Decider,
    pub champion: ModelScore,
    pub canary: Option<ModelScore>,
    pub shadow: Option<ModelScore>,
}

impl Scores {
    /// The deciding model's score.
    pub fn decided(&self) -> ModelScore {
        match (self.decider, self.canary) {
            (Decider::Canary, Some(canary)) => canary,
            _ => self.champion,
        }
    }
}

impl Models {
    /// The model that decides for `decider` (the champion when no canary is served: a retry
    /// answered by a canary that has since stopped).
    pub fn scorer(&self, decider: Decider) -> &Scorer {
        match (decider, &self.canary) {
            (Decider::Canary, Some((canary, _))) => canary,
            _ => &self.champion,
        }
    }

    /// The loaded model of `version` in any role, to reuse it in the next set.
    pub fn find(&self, version: i64) -> Option<Arc<Scorer>> {
        std::iter::once(&self.champion)
            .chain(self.canary.as_ref().map(|(s, _)| s))
            .chain(self.shadow.as_ref())
            .find(|s| s.number() == version)
            .cloned()
    }

    /// Every served model with its role, champion first.
    pub fn served(&self) -> impl Iterator<Item = (Role, &Scorer)> {
        std::iter::once((Role::Champion, &*self.champion))
            .chain(self.canary.as_ref().map(|(s, _)| (Role::Canary, &**s)))
            .chain(self.shadow.as_ref().map(|s| (Role::Shadow, &**s)))
    }

    /// Whether `other` serves the same versions in the same roles with the same split.
    pub fn same_as(&self, other: &Models) -> bool {
        let canary = |m: &Models| m.canary.as_ref().map(|(s, split)| (s.number(), *split));
        let shadow = |m: &Models| m.shadow.as_ref().map(|s| s.number());
        self.champion.number() == other.champion.number()
            && canary(self) == canary(other)
            && shadow(self) == shadow(other)
    }

    /// The feature row `scorer` takes: `row` (the main engine's) when it is on the champion's
    /// feature set, else its own feature set's among `others` (`None` when that engine gave
    /// none).
    pub fn row_of<'r>(
        &self,
        scorer: &Scorer,
        row: &'r [f64],
        others: &'r OtherRows,
    ) -> Option<&'r [f64]> {
        if scorer.feature_set == self.champion.feature_set {
            return Some(row);
        }
        others
            .iter()
            .find(|(sha256, _)| *sha256 == scorer.feature_set)
            .map(|(_, r)| r.as_slice())
    }

    /// Scores one transaction with every served model (`row` from the main engine, `others`
    /// from the engines of other feature sets); the canary decides when the customer
    /// is routed to it. `None` when the champion cannot score the row (the model and the
    /// feature SQL disagree on the number of features). A canary or shadow that cannot score
    /// it records no score (and the champion decides): they never fail a request. Each
    /// model's evaluation time goes to `fraud_model_predict_seconds{role}`.
    pub fn score(
        &self,
        row: &[f64],
        others: &OtherRows,
        customer_id: i64,
        metrics: &Metrics,
    ) -> Option<Scores> {
        let champion = predict(&self.champion, row, metrics.role(Role::Champion))?;
        let candidate = |scorer: &Scorer, role: Role| {
            self.row_of(scorer, row, others)
                .and_then(|r| predict(scorer, r, metrics.role(role)))
        };
        let (canary, decider) = match &self.canary {
            None => (None, Decider::Champion),
            Some((scorer, split)) => {
                let score = candidate(scorer, Role::Canary);
                let decider = match route(customer_id, *split) {
                    Role::Canary if score.is_some() => Decider::Canary,
                    _ => Decider::Champion,
                };
                (score, decider)
            }
        };
        let shadow = self
            .shadow
            .as_ref()
            .and_then(|s| candidate(s, Role::Shadow));
        Some(Scores {
            decider,
            champion,
            canary,
            shadow,
        })
    }
}

/// One model's prediction, its evaluation time observed in `series`.
fn predict(scorer: &Scorer, row: &[f64], series: &RoleSeries) -> Option<ModelScore> {
    let started = Instant::now();
    let score = scorer.model.predict(row)?;
    series.predict.observe(started.elapsed().as_secs_f64());
    Some(ModelScore {
        version: scorer.number(),
        score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::writer::RoleScores;

    #[test]
    fn the_canary_decides_only_with_a_score_and_the_row_keeps_every_score() {
        let champion = ModelScore {
            version: 1,
            score: 0.1,
        };
        let canary = ModelScore {
            version: 2,
            score: 0.9,
        };
        let shadow = ModelScore {
            version: 3,
            score: 0.5,
        };
        let s = Scores {
            decider: Decider::Canary,
            champion,
            canary: Some(canary),
            shadow: Some(shadow),
        };
        assert_eq!(s.decided(), canary);
        let by_champion = Scores {
            decider: Decider::Champion,
            ..s
        };
        assert_eq!(by_champion.decided(), champion);
        assert_eq!(Scores { canary: None, ..s }.decided(), champion);
        let row = RoleScores::from(s);
        assert_eq!(row.decider, Some(Decider::Canary));
        assert_eq!(
            (row.champion, row.canary, row.shadow),
            (Some(champion), Some(canary), Some(shadow))
        );
        // A retry answered from memory keeps only the decider's score.
        let remembered = RoleScores::decided_only(Decider::Canary, canary);
        assert_eq!(
            (remembered.champion, remembered.canary, remembered.shadow),
            (None, Some(canary), None)
        );
    }
}
