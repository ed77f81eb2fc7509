//! The dependency graph of a DAG's tasks: cycles (reported by the loader), run order, upstream
//! sets, and the Mermaid chart `fraudlake dag show --mermaid` prints. Apart from the loader
//! because it is plain graph code over task indices that knows nothing of TOML or ops.

use std::collections::{BTreeSet, HashMap};

use super::DagSpec;

impl DagSpec {
    /// A Mermaid `flowchart TD`: one node per task labelled `id [op]`, one edge per
    /// dependency, and each `run_if` as a note linked to its task by a dotted line.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for t in &self.tasks {
            out.push_str(&format!(
                "    {}[\"{}\"]\n",
                mermaid_id(&t.id),
                mermaid_text(&format!("{} [{}]", t.id, t.op()))
            ));
        }
        for t in self.topological_order() {
            for dep in &t.depends_on {
                out.push_str(&format!(
                    "    {} --> {}\n",
                    mermaid_id(dep),
                    mermaid_id(&t.id)
                ));
            }
        }
        for t in self.tasks.iter().filter(|t| !t.run_if.is_always()) {
            out.push_str(&format!(
                "    If_{}>\"run_if: {}\"] -.- {}\n",
                t.id,
                mermaid_text(t.run_if.source()),
                mermaid_id(&t.id)
            ));
        }
        out
    }
}

const MERMAID_RESERVED: &[&str] = &[
    "end",
    "graph",
    "flowchart",
    "subgraph",
    "style",
    "class",
    "classdef",
    "click",
    "linkstyle",
    "direction",
    "default",
    "call",
    "href",
    "interpolate",
];

/// Task ids are lowercase, so capitalising a Mermaid keyword cannot clash with another task.
fn mermaid_id(id: &str) -> String {
    if MERMAID_RESERVED.contains(&id) {
        let mut cs = id.chars();
        cs.next()
            .map(|c| c.to_ascii_uppercase().to_string() + cs.as_str())
            .unwrap_or_default()
    } else {
        id.to_string()
    }
}

/// Text inside a quoted Mermaid label.
fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// Dependency graph over task indices (file order); unknown and self dependencies are left
/// out (they are reported separately).
pub(crate) struct Graph {
    /// `deps[i]`: indices task `i` depends on.
    deps: Vec<Vec<usize>>,
    /// `down[i]`: indices that depend on task `i`, increasing.
    down: Vec<Vec<usize>>,
}

impl Graph {
    pub(crate) fn new(tasks: &[(&str, &[String])]) -> Graph {
        let index = |id: &str| tasks.iter().position(|(t, _)| *t == id);
        let mut deps = vec![Vec::new(); tasks.len()];
        let mut down = vec![Vec::new(); tasks.len()];
        for (i, (_, ds)) in tasks.iter().enumerate() {
            for d in ds.iter() {
                if let Some(j) = index(d) {
                    if j != i && !deps[i].contains(&j) {
                        deps[i].push(j);
                        down[j].push(i);
                    }
                }
            }
        }
        for d in &mut down {
            d.sort_unstable();
        }
        Graph { deps, down }
    }

    /// Indices task `i` depends on, directly or not, increasing.
    pub(crate) fn upstream(&self, i: usize) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = self.deps[i].clone();
        while let Some(j) = stack.pop() {
            if seen.insert(j) {
                stack.extend(self.deps[j].iter().copied());
            }
        }
        seen.remove(&i);
        seen.into_iter().collect()
    }

    /// Kahn's algorithm, always taking the ready task earliest in the file.
    pub(crate) fn topological_order(&self) -> Vec<usize> {
        let mut indegree: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<usize> =
            (0..indegree.len()).filter(|&i| indegree[i] == 0).collect();
        let mut out = Vec::with_capacity(indegree.len());
        while let Some(i) = ready.pop_first() {
            out.push(i);
            for &j in &self.down[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        out
    }

    /// One cycle per strongly connected component with more than one task, each starting at
    /// its task earliest in the file and ending there again, shortest first found.
    pub(crate) fn cycles(&self) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for component in self.components() {
            if component.len() < 2 {
                continue;
            }
            let start = component[0];
            // Breadth-first from `start` along run direction, inside the component.
            let mut parent: HashMap<usize, usize> = HashMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut end = None;
            'search: while let Some(u) = queue.pop_front() {
                for &v in &self.down[u] {
                    if v == start {
                        end = Some(u);
                        break 'search;
                    }
                    if component.binary_search(&v).is_ok() && !parent.contains_key(&v) {
                        parent.insert(v, u);
                        queue.push_back(v);
                    }
                }
            }
            let Some(mut u) = end else { continue };
            let mut path = vec![start];
            while u != start {
                path.push(u);
                u = match parent.get(&u) {
                    Some(&p) => p,
                    None => break,
                };
            }
            path[1..].reverse();
            path.push(start);
            out.push(path);
        }
        out.sort();
        out
    }

    /// Strongly connected components (Tarjan), each sorted, in no particular order.
    fn components(&self) -> Vec<Vec<usize>> {
        struct State {
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            on_stack: Vec<bool>,
            stack: Vec<usize>,
            next: usize,
            out: Vec<Vec<usize>>,
        }
        fn visit(g: &Graph, v: usize, s: &mut State) {
            s.index[v] = Some(s.next);
            s.low[v] = s.next;
            s.next += 1;
            s.stack.push(v);
            s.on_stack[v] = true;
            for &w in &g.down[v] {
                match s.index[w] {
                    None => {
                        visit(g, w, s);
                        s.low[v] = s.low[v].min(s.low[w]);
                    }
                    Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(s.low[v]) == s.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                comp.sort_unstable();
                s.out.push(comp);
            }
        }
        let n = self.deps.len();
        let mut s = State {
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            out: Vec::new(),
        };
        for v in 0..n {
            if s.index[v].is_none() {
                visit(self, v, &mut s);
            }
        }
        s.out
    }
}
