//! Layer roles: every tensor name maps to exactly one [`Role`] through a data table.
//!
//! The table is ordered; the first rule that matches wins. Names are lower-cased and split on
//! `.` into segments; a rule matches a segment exactly, by substring, or (for the few cases that
//! need context, like BERT's `layer.N.output.dense`) by a sequence of segments. Later readers
//! (the encoder, search) reuse this table, so an architecture is added here once.

use std::fmt;

/// What part of a network a tensor belongs to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Token, position, type and patch embeddings.
    Embedding,
    /// Attention projections (query/key/value/output) and their biases.
    Attention,
    /// Feed-forward blocks (MLP, FFN, intermediate/output dense).
    Mlp,
    /// Normalisation scales and biases.
    Norm,
    /// Output heads: LM head, pooler, classifiers.
    Head,
    /// Anything the table does not know. Nothing is dropped for being unknown.
    Other,
}

impl Role {
    /// All roles, in display order.
    pub const ALL: [Role; 6] = [
        Role::Embedding,
        Role::Attention,
        Role::Mlp,
        Role::Norm,
        Role::Head,
        Role::Other,
    ];

    /// Canonical lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Embedding => "embedding",
            Role::Attention => "attention",
            Role::Mlp => "mlp",
            Role::Norm => "norm",
            Role::Head => "head",
            Role::Other => "other",
        }
    }

    /// The role of a tensor name, by the first matching rule of [`ROLE_RULES`].
    pub fn of(name: &str) -> Role {
        let lower = name.to_ascii_lowercase();
        let segments: Vec<&str> = lower.split('.').collect();
        ROLE_RULES
            .iter()
            .find(|rule| rule.pattern.matches(&segments))
            .map_or(Role::Other, |rule| rule.role)
    }

    /// Parse a role name or alias, case-insensitively (`attn`, `ffn`, `embeddings`, `layernorm`…).
    pub fn parse(text: &str) -> Option<Role> {
        let lower = text.trim().to_ascii_lowercase();
        ROLE_ALIASES
            .iter()
            .find(|(alias, _)| *alias == lower)
            .map(|(_, role)| *role)
    }

    /// The accepted names, for error messages.
    pub fn valid_names() -> String {
        let mut names = String::new();
        for role in Role::ALL {
            names.push_str(role.as_str());
            names.push_str(", ");
        }
        names.push_str("all (aliases: attn, ffn, feed_forward, intermediate, embed, embeddings, layernorm, ln, lm_head, classifier)");
        names
    }

    /// The accepted name nearest to a misspelt `word` (at most two edits away), for "did you
    /// mean".
    pub fn closest(word: &str) -> Option<&'static str> {
        let word = word.to_ascii_lowercase();
        ROLE_ALIASES
            .iter()
            .map(|(name, _)| *name)
            .chain(["all"])
            .map(|name| (crate::text::edit_distance(&word, name), name))
            .filter(|&(d, _)| d <= 2)
            .min()
            .map(|(_, name)| name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names accepted by `--layers`, lower-case. `all` is handled by the caller.
pub const ROLE_ALIASES: &[(&str, Role)] = &[
    ("embedding", Role::Embedding),
    ("embeddings", Role::Embedding),
    ("embed", Role::Embedding),
    ("emb", Role::Embedding),
    ("attention", Role::Attention),
    ("attentions", Role::Attention),
    ("attn", Role::Attention),
    ("self_attention", Role::Attention),
    ("self-attention", Role::Attention),
    ("mlp", Role::Mlp),
    ("ffn", Role::Mlp),
    ("feed_forward", Role::Mlp),
    ("feedforward", Role::Mlp),
    ("feed-forward", Role::Mlp),
    ("intermediate", Role::Mlp),
    ("fc", Role::Mlp),
    ("norm", Role::Norm),
    ("norms", Role::Norm),
    ("layernorm", Role::Norm),
    ("layer_norm", Role::Norm),
    ("ln", Role::Norm),
    ("rmsnorm", Role::Norm),
    ("normalization", Role::Norm),
    ("head", Role::Head),
    ("heads", Role::Head),
    ("lm_head", Role::Head),
    ("classifier", Role::Head),
    ("pooler", Role::Head),
    ("other", Role::Other),
    ("others", Role::Other),
];

/// How a rule looks at the name's segments.
#[derive(Debug, Clone, Copy)]
pub enum Pattern {
    /// Some segment equals this text.
    Segment(&'static str),
    /// Some segment contains this text.
    Contains(&'static str),
    /// Some segment starts with this text.
    Prefix(&'static str),
    /// The name ends with these segments (`["output", "weight"]` for `output.weight`).
    Whole(&'static [&'static str]),
    /// Segments in a row, where `#` stands for a layer number (`["layer", "#", "output"]`).
    Sequence(&'static [&'static str]),
}

impl Pattern {
    fn matches(&self, segments: &[&str]) -> bool {
        match *self {
            Pattern::Segment(s) => segments.contains(&s),
            Pattern::Contains(s) => segments.iter().any(|seg| seg.contains(s)),
            Pattern::Prefix(s) => segments.iter().any(|seg| seg.starts_with(s)),
            Pattern::Whole(parts) => segments == parts,
            Pattern::Sequence(parts) => segments.windows(parts.len()).any(|w| {
                w.iter().zip(parts).all(|(seg, part)| {
                    if *part == "#" {
                        !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit())
                    } else {
                        seg == part
                    }
                })
            }),
        }
    }
}

/// One row of the role table.
#[derive(Debug, Clone, Copy)]
pub struct RoleRule {
    /// What to look for.
    pub pattern: Pattern,
    /// The role it gives.
    pub role: Role,
    /// Which architectures need this rule (documentation for readers of the table).
    pub seen_in: &'static str,
}

const fn rule(pattern: Pattern, role: Role, seen_in: &'static str) -> RoleRule {
    RoleRule {
        pattern,
        role,
        seen_in,
    }
}

use Pattern::{Contains, Prefix, Segment, Sequence, Whole};

/// The ordered table. Norms come first because they sit inside attention and embedding blocks
/// (`attention.output.LayerNorm`, `embeddings.LayerNorm`); heads come before embeddings because
/// GPT-NeoX calls its output head `embed_out`.
pub static ROLE_RULES: &[RoleRule] = &[
    // --- norm ---
    rule(
        Contains("norm"),
        Role::Norm,
        "LayerNorm, layer_norm, *_layernorm, RMSNorm, attn_norm, ffn_norm, output_norm",
    ),
    rule(Prefix("ln_"), Role::Norm, "GPT-2, GPT-J: ln_1, ln_2, ln_f"),
    rule(Segment("ln"), Role::Norm, "generic"),
    // --- head ---
    rule(Segment("lm_head"), Role::Head, "GPT-2, LLaMA, RoBERTa, T5"),
    rule(Segment("embed_out"), Role::Head, "GPT-NeoX"),
    rule(Segment("pooler"), Role::Head, "BERT, RoBERTa, ViT"),
    rule(
        Segment("classifier"),
        Role::Head,
        "sequence classification heads",
    ),
    rule(Segment("pre_classifier"), Role::Head, "DistilBERT"),
    rule(
        Segment("cls"),
        Role::Head,
        "BERT pre-training heads (cls.predictions)",
    ),
    rule(Segment("predictions"), Role::Head, "ALBERT, BERT MLM heads"),
    rule(Segment("qa_outputs"), Role::Head, "question answering"),
    rule(
        Segment("score"),
        Role::Head,
        "LLaMA sequence classification",
    ),
    rule(Segment("vocab_transform"), Role::Head, "DistilBERT MLM"),
    rule(Segment("vocab_projector"), Role::Head, "DistilBERT MLM"),
    rule(Segment("final_logits_bias"), Role::Head, "BART"),
    rule(
        Whole(&["output", "weight"]),
        Role::Head,
        "GGUF output.weight",
    ),
    rule(Whole(&["output", "bias"]), Role::Head, "GGUF output.bias"),
    // --- embedding ---
    rule(
        Contains("embedding"),
        Role::Embedding,
        "word/position/token_type/patch embeddings",
    ),
    rule(
        Segment("embed_tokens"),
        Role::Embedding,
        "LLaMA, Mistral, Qwen2, BART",
    ),
    rule(Segment("embed_positions"), Role::Embedding, "BART, OPT"),
    rule(Segment("embed_in"), Role::Embedding, "GPT-NeoX"),
    rule(Segment("wte"), Role::Embedding, "GPT-2, GPT-J"),
    rule(Segment("wpe"), Role::Embedding, "GPT-2"),
    rule(
        Segment("shared"),
        Role::Embedding,
        "T5, BART shared token embedding",
    ),
    rule(Segment("token_embd"), Role::Embedding, "GGUF"),
    rule(
        Segment("tok_embeddings"),
        Role::Embedding,
        "Meta LLaMA checkpoints",
    ),
    rule(Segment("cls_token"), Role::Embedding, "ViT"),
    rule(
        Segment("embedding_hidden_mapping_in"),
        Role::Embedding,
        "ALBERT",
    ),
    // --- attention ---
    rule(
        Contains("attention"),
        Role::Attention,
        "BERT, RoBERTa, ALBERT, MPNet, GPT-NeoX, T5 SelfAttention/EncDecAttention",
    ),
    rule(
        Contains("attn"),
        Role::Attention,
        "GPT-2 attn, LLaMA self_attn, BART encoder_attn, GGUF attn_q",
    ),
    rule(Segment("q_proj"), Role::Attention, "LLaMA, BART, GPT-J"),
    rule(Segment("k_proj"), Role::Attention, "LLaMA, BART, GPT-J"),
    rule(Segment("v_proj"), Role::Attention, "LLaMA, BART, GPT-J"),
    rule(Segment("o_proj"), Role::Attention, "LLaMA"),
    rule(
        Segment("query_key_value"),
        Role::Attention,
        "GPT-NeoX, Falcon",
    ),
    rule(Segment("qkv"), Role::Attention, "fused attention"),
    // --- mlp ---
    rule(
        Segment("mlp"),
        Role::Mlp,
        "GPT-2, GPT-J, LLaMA, ViT (timm), GPT-NeoX",
    ),
    rule(
        Prefix("ffn"),
        Role::Mlp,
        "DistilBERT ffn, ALBERT ffn/ffn_output, GGUF ffn_up/ffn_down/ffn_gate",
    ),
    rule(
        Segment("intermediate"),
        Role::Mlp,
        "BERT, RoBERTa, MPNet, ViT",
    ),
    rule(Segment("densereludense"), Role::Mlp, "T5"),
    rule(Segment("densegatedactdense"), Role::Mlp, "T5 v1.1"),
    rule(Segment("feed_forward"), Role::Mlp, "Mistral/Mixtral style"),
    rule(Segment("fc1"), Role::Mlp, "BART, OPT, ViT"),
    rule(Segment("fc2"), Role::Mlp, "BART, OPT, ViT"),
    rule(Segment("gate_proj"), Role::Mlp, "LLaMA, Mistral, Qwen2"),
    rule(Segment("up_proj"), Role::Mlp, "LLaMA, Mistral, Qwen2"),
    rule(Segment("down_proj"), Role::Mlp, "LLaMA, Mistral, Qwen2"),
    rule(
        Sequence(&["layer", "#", "output"]),
        Role::Mlp,
        "BERT, RoBERTa, MPNet, ViT: layer.N.output.dense after intermediate",
    ),
    rule(
        Sequence(&["layers", "#", "output"]),
        Role::Mlp,
        "BERT-like variants",
    ),
];

/// The layer (block) index of a tensor: the first all-digit segment (`h.3`, `layer.3`,
/// `layers.3`, `blk.3`, `block.3`).
pub fn layer_index(name: &str) -> Option<u32> {
    name.split('.')
        .find(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|seg| seg.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table-driven: (name, role) pairs from real checkpoints of each architecture.
    const CASES: &[(&str, Role)] = &[
        // GPT-2
        ("h.0.attn.c_attn.weight", Role::Attention),
        ("h.0.attn.c_proj.bias", Role::Attention),
        ("h.0.mlp.c_fc.weight", Role::Mlp),
        ("h.0.mlp.c_proj.weight", Role::Mlp),
        ("wte.weight", Role::Embedding),
        ("wpe.weight", Role::Embedding),
        ("h.0.ln_1.weight", Role::Norm),
        ("ln_f.bias", Role::Norm),
        ("transformer.h.11.ln_2.weight", Role::Norm),
        // BERT
        (
            "encoder.layer.0.attention.output.dense.weight",
            Role::Attention,
        ),
        (
            "encoder.layer.0.attention.self.query.weight",
            Role::Attention,
        ),
        ("encoder.layer.0.intermediate.dense.weight", Role::Mlp),
        ("encoder.layer.0.output.dense.weight", Role::Mlp),
        ("encoder.layer.0.output.LayerNorm.weight", Role::Norm),
        (
            "encoder.layer.0.attention.output.LayerNorm.bias",
            Role::Norm,
        ),
        ("embeddings.LayerNorm.weight", Role::Norm),
        ("embeddings.word_embeddings.weight", Role::Embedding),
        (
            "bert.embeddings.token_type_embeddings.weight",
            Role::Embedding,
        ),
        ("pooler.dense.weight", Role::Head),
        ("cls.predictions.transform.dense.weight", Role::Head),
        // RoBERTa
        (
            "roberta.encoder.layer.3.attention.self.key.bias",
            Role::Attention,
        ),
        (
            "roberta.embeddings.position_embeddings.weight",
            Role::Embedding,
        ),
        ("lm_head.dense.weight", Role::Head),
        // DistilBERT
        ("transformer.layer.0.ffn.lin1.weight", Role::Mlp),
        ("distilbert.transformer.layer.0.ffn.lin2.bias", Role::Mlp),
        (
            "distilbert.transformer.layer.0.attention.q_lin.weight",
            Role::Attention,
        ),
        (
            "distilbert.transformer.layer.0.sa_layer_norm.weight",
            Role::Norm,
        ),
        (
            "distilbert.transformer.layer.0.output_layer_norm.weight",
            Role::Norm,
        ),
        ("vocab_projector.bias", Role::Head),
        // MPNet
        (
            "mpnet.encoder.layer.0.attention.attn.q.weight",
            Role::Attention,
        ),
        (
            "mpnet.encoder.relative_attention_bias.weight",
            Role::Attention,
        ),
        ("mpnet.encoder.layer.0.output.dense.weight", Role::Mlp),
        // ALBERT
        (
            "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight",
            Role::Attention,
        ),
        (
            "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight",
            Role::Mlp,
        ),
        (
            "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.weight",
            Role::Mlp,
        ),
        (
            "albert.encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.weight",
            Role::Norm,
        ),
        (
            "albert.encoder.embedding_hidden_mapping_in.weight",
            Role::Embedding,
        ),
        // GPT-J
        ("transformer.h.0.attn.q_proj.weight", Role::Attention),
        ("transformer.h.0.mlp.fc_in.weight", Role::Mlp),
        ("transformer.h.0.mlp.fc_out.bias", Role::Mlp),
        // GPT-NeoX
        (
            "gpt_neox.layers.0.attention.query_key_value.weight",
            Role::Attention,
        ),
        ("gpt_neox.layers.0.mlp.dense_h_to_4h.weight", Role::Mlp),
        ("gpt_neox.layers.0.input_layernorm.weight", Role::Norm),
        ("gpt_neox.embed_in.weight", Role::Embedding),
        ("embed_out.weight", Role::Head),
        ("gpt_neox.final_layer_norm.weight", Role::Norm),
        // LLaMA / Mistral / Qwen2
        ("model.layers.0.mlp.gate_proj.weight", Role::Mlp),
        ("model.layers.0.mlp.down_proj.weight", Role::Mlp),
        ("model.layers.0.self_attn.q_proj.weight", Role::Attention),
        ("model.layers.0.self_attn.o_proj.weight", Role::Attention),
        ("model.layers.0.input_layernorm.weight", Role::Norm),
        ("model.layers.0.post_attention_layernorm.weight", Role::Norm),
        ("model.embed_tokens.weight", Role::Embedding),
        ("model.norm.weight", Role::Norm),
        ("lm_head.weight", Role::Head),
        // T5
        (
            "encoder.block.0.layer.1.DenseReluDense.wi.weight",
            Role::Mlp,
        ),
        (
            "encoder.block.0.layer.1.DenseReluDense.wo.weight",
            Role::Mlp,
        ),
        (
            "encoder.block.0.layer.0.SelfAttention.q.weight",
            Role::Attention,
        ),
        (
            "decoder.block.0.layer.1.EncDecAttention.k.weight",
            Role::Attention,
        ),
        ("encoder.block.0.layer.0.layer_norm.weight", Role::Norm),
        ("encoder.final_layer_norm.weight", Role::Norm),
        ("shared.weight", Role::Embedding),
        // BART
        (
            "model.encoder.layers.0.self_attn.k_proj.weight",
            Role::Attention,
        ),
        (
            "model.decoder.layers.0.encoder_attn.v_proj.bias",
            Role::Attention,
        ),
        ("model.encoder.layers.0.fc1.weight", Role::Mlp),
        (
            "model.encoder.layers.0.self_attn_layer_norm.weight",
            Role::Norm,
        ),
        ("model.encoder.embed_positions.weight", Role::Embedding),
        ("model.shared.weight", Role::Embedding),
        ("final_logits_bias", Role::Head),
        // ViT
        (
            "vit.embeddings.patch_embeddings.projection.weight",
            Role::Embedding,
        ),
        ("vit.embeddings.cls_token", Role::Embedding),
        (
            "vit.encoder.layer.0.attention.attention.query.weight",
            Role::Attention,
        ),
        ("vit.encoder.layer.0.intermediate.dense.weight", Role::Mlp),
        ("vit.encoder.layer.0.output.dense.weight", Role::Mlp),
        ("vit.encoder.layer.0.layernorm_before.weight", Role::Norm),
        ("classifier.weight", Role::Head),
        // GGUF-style
        ("token_embd.weight", Role::Embedding),
        ("blk.0.attn_q.weight", Role::Attention),
        ("blk.0.attn_output.weight", Role::Attention),
        ("blk.0.ffn_up.weight", Role::Mlp),
        ("blk.0.ffn_gate.weight", Role::Mlp),
        ("blk.0.attn_norm.weight", Role::Norm),
        ("blk.0.ffn_norm.weight", Role::Norm),
        ("output_norm.weight", Role::Norm),
        ("output.weight", Role::Head),
        // Unknown
        ("some.custom.thing", Role::Other),
        ("logit_scale", Role::Other),
    ];

    #[test]
    fn role_table_covers_known_architectures() {
        let wrong: Vec<String> = CASES
            .iter()
            .filter(|(name, role)| Role::of(name) != *role)
            .map(|(name, role)| format!("{name}: expected {role}, got {}", Role::of(name)))
            .collect();
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    }

    #[test]
    fn aliases_parse_case_insensitively() {
        for (text, role) in [
            ("Attention", Role::Attention),
            ("ATTN", Role::Attention),
            ("ffn", Role::Mlp),
            ("embeddings", Role::Embedding),
            ("LayerNorm", Role::Norm),
            ("mlp", Role::Mlp),
        ] {
            assert_eq!(Role::parse(text), Some(role), "{text}");
        }
        assert_eq!(Role::parse("transformer"), None);
    }

    #[test]
    fn layer_index_is_first_numeric_segment() {
        assert_eq!(layer_index("h.11.attn.c_attn.weight"), Some(11));
        assert_eq!(layer_index("encoder.layer.3.output.dense.weight"), Some(3));
        assert_eq!(layer_index("blk.7.ffn_up.weight"), Some(7));
        assert_eq!(layer_index("wte.weight"), None);
    }
}
