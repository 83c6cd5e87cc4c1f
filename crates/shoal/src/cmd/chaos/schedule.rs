//! What a run does when: a warm-up, then nemeses one after another, each held for a while and
//! followed by a quiet spell, then a tail. A nemesis that [runs beside](Nemesis::runs_beside)
//! the others (a rolling upgrade, DDL churn) starts in its turn and holds while the next ones
//! come and go; the next such one starts only after it. Given nemeses (a scenario) or drawn
//! from a seed: the same seed gives the same schedule.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::nemesis::Nemesis;

/// Writes before the first fault: chunks exist and have a primary to aim at.
pub const WARM_UP: Duration = Duration::from_secs(8);
/// After each fault: time to fail over or recover before the next.
pub const QUIET: Duration = Duration::from_secs(8);
/// Writes after the last fault, while the cluster recovers.
pub const TAIL: Duration = Duration::from_secs(8);
/// Random holds bracket the 3 s heartbeat, 10 s replication wait and 17 s primary timeout.
const HOLDS_S: [u64; 5] = [2, 5, 12, 20, 40];

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Step {
    pub nemesis: Nemesis,
    #[serde(rename = "hold_s", serialize_with = "secs")]
    pub hold: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Schedule {
    pub seed: Option<u64>,
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Each nemesis in turn, held `hold` (or its [`Nemesis::min_hold`]).
    pub fn scenario(nemeses: &[Nemesis], hold: Duration) -> Self {
        Self {
            seed: None,
            steps: nemeses
                .iter()
                .map(|n| Step {
                    nemesis: *n,
                    hold: hold.max(n.min_hold()),
                })
                .collect(),
        }
    }

    /// Random nemeses (any but `exclude`) and holds from `seed`, as many as fit in `budget`
    /// (at least one).
    pub fn random(seed: u64, budget: Duration, exclude: &[Nemesis]) -> anyhow::Result<Self> {
        let pool: Vec<Nemesis> = Nemesis::ALL
            .into_iter()
            .filter(|n| !exclude.contains(n))
            .collect();
        if pool.is_empty() {
            anyhow::bail!("every nemesis is excluded");
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut schedule = Self {
            seed: Some(seed),
            steps: Vec::new(),
        };
        loop {
            let nemesis = *pool.choose(&mut rng).unwrap_or(&pool[0]);
            let hold = Duration::from_secs(HOLDS_S[rng.random_range(0..HOLDS_S.len())])
                .max(nemesis.min_hold());
            schedule.steps.push(Step { nemesis, hold });
            if schedule.steps.len() > 1 && schedule.duration() > budget {
                schedule.steps.pop();
                return Ok(schedule);
            }
        }
    }

    /// How long the workload must run to cover the schedule.
    pub fn duration(&self) -> Duration {
        let mut t = WARM_UP;
        // When the nemesis running beside the others is held until.
        let mut beside_until = Duration::ZERO;
        for s in &self.steps {
            if s.nemesis.runs_beside() {
                t = t.max(beside_until);
                beside_until = t + s.hold;
            } else {
                t += s.hold + QUIET;
            }
        }
        t.max(beside_until + QUIET) + TAIL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_within_the_budget() {
        let budget = Duration::from_secs(180);
        let random = |seed| Schedule::random(seed, budget, &[]).unwrap();
        let a = random(42);
        assert_eq!(a, random(42));
        assert_ne!(a.steps, random(43).steps);
        assert!(a.duration() <= budget, "{:?}", a.duration());
        assert!(!a.steps.is_empty());
        let tiny = Schedule::random(1, Duration::from_secs(1), &[]).unwrap();
        assert_eq!(tiny.steps.len(), 1, "at least one fault even over budget");
    }

    #[test]
    fn excluded_nemeses_are_never_drawn() {
        let exclude = [Nemesis::WipePrimary, Nemesis::DiskFull];
        for seed in 0..20 {
            let s = Schedule::random(seed, Duration::from_secs(600), &exclude).unwrap();
            assert!(s.steps.iter().all(|st| !exclude.contains(&st.nemesis)));
        }
        assert!(Schedule::random(0, Duration::from_secs(60), &Nemesis::ALL).is_err());
    }

    #[test]
    fn a_scenario_holds_each_nemesis_in_turn() {
        let s = Schedule::scenario(
            &[Nemesis::PausePrimary, Nemesis::KillLeader],
            Duration::from_secs(20),
        );
        assert_eq!(s.steps.len(), 2);
        assert_eq!(
            s.duration(),
            WARM_UP + TAIL + 2 * (QUIET + Duration::from_secs(20))
        );
        let upgrade = Schedule::scenario(&[Nemesis::Upgrade], Duration::from_secs(20));
        assert_eq!(upgrade.steps[0].hold, Nemesis::Upgrade.min_hold());
    }

    #[test]
    fn an_upgrade_holds_beside_the_faults_after_it_and_the_next_waits_for_it() {
        let min = Nemesis::Upgrade.min_hold();
        let hold = Duration::from_secs(20);
        // Faults shorter than the upgrade: the upgrade's hold decides.
        let beside = Schedule::scenario(
            &[Nemesis::Upgrade, Nemesis::PausePrimary, Nemesis::KillLeader],
            hold,
        );
        assert_eq!(beside.duration(), WARM_UP + min + QUIET + TAIL);
        // Faults longer than it: they decide.
        let many = [Nemesis::PausePrimary; 8];
        let long = Schedule::scenario(&[&[Nemesis::Upgrade][..], &many[..]].concat(), hold);
        assert_eq!(long.duration(), WARM_UP + 8 * (hold + QUIET) + TAIL);
        // A second upgrade starts once the first is held no more.
        let two = Schedule::scenario(
            &[Nemesis::Upgrade, Nemesis::PausePrimary, Nemesis::Upgrade],
            hold,
        );
        assert_eq!(two.duration(), WARM_UP + 2 * min + QUIET + TAIL);
    }
}
