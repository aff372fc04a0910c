//! Whatever text arrives (a typo'd file, a truncated upload, random bytes), the job file
//! parser answers with jobs or problems and never panics.

use proptest::prelude::*;
use saturn_agent::jobfile::{parse_job_file, parse_job_json};

const VALID: &str = r#"[[job]]
name = "gpt2"
command = ["python3", "train.py"]
steps = 20000
techniques = ["ddp", "fsdp"]
gpus = [1, 8]
env = { HF_HOME = "/data/hf" }
[job.profile]
fsdp = { 2 = 0.41, 4 = 0.23 }

[[sweep]]
name = "vit-bs{bs}-lr{lr}"
command = ["python3", "train_vit.py", "--bs", "{bs}", "--lr", "{lr}"]
grid = { bs = [64, 128], lr = ["1e-5", 1e-4] }
steps = 10000
gpus = 4
profile_group = "vit-{bs}"
"#;

const VALID_JSON: &str = r#"{"job": [{"name": "gpt2", "command": ["python3", "train.py"], "steps": 20000,
  "gpus": [1, 8], "profile": {"ddp": {"2": 0.41}}}],
 "sweep": [{"name": "vit-bs{bs}", "command": ["x", "{bs}"], "grid": {"bs": [64, 128]}, "steps": 10}]}"#;

/// One edit of a text: a character position (as a fraction of the length) and what to do.
#[derive(Debug, Clone)]
enum Edit {
    Delete(f64, usize),
    Insert(f64, String),
    Duplicate(f64, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let fragments = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\"".to_string()),
        Just("\n".to_string()),
        Just("=".to_string()),
        Just("{bs}".to_string()),
        Just("[[sweep]]\n".to_string()),
        Just("-1".to_string()),
        Just("1e309".to_string()),
        Just("{{".to_string()),
        "\\PC{0,8}",
    ];
    prop_oneof![
        (0.0..1.0f64, 1usize..20).prop_map(|(at, n)| Edit::Delete(at, n)),
        (0.0..1.0f64, fragments).prop_map(|(at, s)| Edit::Insert(at, s)),
        (0.0..1.0f64, 1usize..40).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |fraction: f64| ((fraction * chars.len() as f64) as usize).min(chars.len());
    let mut out = chars.clone();
    match edit {
        Edit::Delete(f, n) => {
            let start = at(*f);
            out.drain(start..(start + n).min(chars.len()));
        }
        Edit::Insert(f, s) => {
            let start = at(*f);
            out.splice(start..start, s.chars());
        }
        Edit::Duplicate(f, n) => {
            let start = at(*f);
            let piece: Vec<char> = chars[start..(start + n).min(chars.len())].to_vec();
            out.splice(start..start, piece);
        }
    }
    out.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse_job_file(&text, "fuzz.toml", "/");
        let _ = parse_job_json(&text, "/");
    }

    #[test]
    fn mutated_valid_files_never_panic(edits in proptest::collection::vec(edit(), 1..6)) {
        let text = edits.iter().fold(VALID.to_string(), |text, e| apply(&text, e));
        if let Err(errors) = parse_job_file(&text, "fuzz.toml", "/") {
            // A rejection always says something, and each line names the file.
            prop_assert!(!errors.problems.is_empty());
            prop_assert!(errors.lines().iter().all(|l| l.starts_with("fuzz.toml")));
        }
    }

    #[test]
    fn mutated_valid_json_never_panics(edits in proptest::collection::vec(edit(), 1..6)) {
        let text = edits.iter().fold(VALID_JSON.to_string(), |text, e| apply(&text, e));
        if let Err(errors) = parse_job_json(&text, "/") {
            prop_assert!(!errors.problems.is_empty());
        }
    }
}

#[test]
fn the_unmutated_seeds_are_valid() {
    let jobs = parse_job_file(VALID, "fuzz.toml", "/").expect("the TOML seed must be valid");
    assert_eq!(jobs.len(), 5);
    let jobs = parse_job_json(VALID_JSON, "/").expect("the JSON seed must be valid");
    assert_eq!(jobs.len(), 3);
}
