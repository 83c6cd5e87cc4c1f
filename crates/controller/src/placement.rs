//! Where a new chunk's replicas go: `dfsReplicationFactor` data nodes that are UP, on distinct
//! machines as `dfsReplicaReliabilityLevel` demands, least-loaded first.
//!
//! Runs on the leader before it proposes the chunk; the chosen nodes travel in the Raft command,
//! so applying it is deterministic whatever this function becomes in a later version.

use std::collections::BTreeMap;

use shoal_common::config::ReliabilityLevel;

/// A data node that can take a replica.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub alias: &'a str,
    pub machine: &'a str,
    /// Replicas it already holds.
    pub load: usize,
}

/// Chooses `factor` nodes, or explains why it cannot.
pub fn place(
    candidates: &[Candidate<'_>],
    factor: usize,
    level: ReliabilityLevel,
) -> Result<Vec<String>, String> {
    let mut sorted: Vec<&Candidate<'_>> = candidates.iter().collect();
    sorted.sort_by_key(|c| (c.load, c.alias));
    let mut chosen: Vec<&Candidate<'_>> = Vec::new();
    // First pass: distinct machines (required for level 1, preferred for level 2).
    if level != ReliabilityLevel::SameMachineAllowed {
        for c in &sorted {
            if chosen.len() < factor && chosen.iter().all(|x| x.machine != c.machine) {
                chosen.push(c);
            }
        }
    }
    // Second pass: any other node, unless machines must differ.
    if level != ReliabilityLevel::MustDiffer {
        for c in &sorted {
            if chosen.len() < factor && chosen.iter().all(|x| x.alias != c.alias) {
                chosen.push(c);
            }
        }
    }
    if chosen.len() < factor {
        let machines: BTreeMap<&str, ()> = candidates.iter().map(|c| (c.machine, ())).collect();
        return Err(format!(
            "cannot place {factor} replicas: {} data nodes up on {} machines (dfsReplicaReliabilityLevel={})",
            candidates.len(),
            machines.len(),
            level.level()
        ));
    }
    Ok(chosen.into_iter().map(|c| c.alias.to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c<'a>(alias: &'a str, machine: &'a str, load: usize) -> Candidate<'a> {
        Candidate {
            alias,
            machine,
            load,
        }
    }

    #[test]
    fn replicas_go_to_distinct_machines_least_loaded_first() {
        let nodes = [
            c("n1", "m1", 5),
            c("n1b", "m1", 0),
            c("n2", "m2", 3),
            c("n3", "m3", 1),
        ];
        let chosen = place(&nodes, 2, ReliabilityLevel::MustDiffer).unwrap();
        assert_eq!(chosen, ["n1b", "n3"]);
    }

    #[test]
    fn must_differ_refuses_when_machines_run_out_and_level_two_falls_back() {
        let nodes = [c("n1", "m1", 0), c("n1b", "m1", 0)];
        let err = place(&nodes, 2, ReliabilityLevel::MustDiffer).unwrap_err();
        assert!(err.contains("1 machines"), "{err}");
        assert_eq!(
            place(&nodes, 2, ReliabilityLevel::DifferWhenPossible)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            place(&nodes, 2, ReliabilityLevel::SameMachineAllowed)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn with_one_machine_of_three_down_two_replicas_still_fit() {
        let nodes = [c("node1", "127.0.0.1", 4), c("node3", "127.0.0.3", 4)];
        assert_eq!(
            place(&nodes, 2, ReliabilityLevel::MustDiffer).unwrap(),
            ["node1", "node3"]
        );
    }
}
