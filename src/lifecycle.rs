//! The words of the processor lifecycle (`xs.<kind>.<name>.<event>`) and the meta keys its
//! frames carry, for our kinds and for cross.stream's (`actor`, `service`): the daemon writes
//! them, the CLI reads them.

/// How one kind of processor is spoken about: its topic word and the meta keys it stamps.
#[derive(Debug, PartialEq, Eq)]
pub struct Vocab {
    /// The topic word: frames are `xs.<word>.<name>.<event>`.
    pub word: &'static str,
    /// What runs it: `handler`, `generator`, `action` or `webhook`.
    pub engine: &'static str,
    /// The keys pointing a lifecycle answer at its create (the first is the one read back).
    pub create_keys: &'static [&'static str],
    /// The key of the error text in `invalid`.
    pub invalid_error: &'static str,
    /// The key of the error text in `fin.error`.
    pub fin_error: &'static str,
    /// The key of the newer create in `replaced`.
    pub replaced_by: &'static str,
    /// The key of the term frame in `fin.term`.
    pub term: &'static str,
    /// The key naming the processor on its output frames.
    pub output: &'static str,
    /// The key naming the processor on what its script `.append`s.
    pub append: &'static str,
}

impl Vocab {
    /// The key pointing a lifecycle answer at its create.
    pub fn create_key(&self) -> &'static str {
        self.create_keys[0]
    }

    /// The vocabulary of `xs.<word>.`, if it is a kind.
    pub fn of(word: &str) -> Option<&'static Vocab> {
        ALL.iter().copied().find(|v| v.word == word)
    }
}

/// Our handlers.
pub const HANDLER: Vocab = Vocab {
    word: "handler",
    engine: "handler",
    create_keys: &["create_id"],
    invalid_error: "error",
    fin_error: "error",
    replaced_by: "replaced_by",
    term: "term_id",
    output: "handler_id",
    append: "handler_id",
};

/// cross.stream's actors: handlers, with its keys.
pub const ACTOR: Vocab = Vocab {
    word: "actor",
    engine: "handler",
    create_keys: &["actor_id"],
    invalid_error: "error",
    fin_error: "error",
    replaced_by: "frame_id",
    term: "frame_id",
    output: "actor_id",
    append: "actor_id",
};

/// Our generators.
pub const GENERATOR: Vocab = Vocab {
    word: "generator",
    engine: "generator",
    create_keys: &["create_id"],
    invalid_error: "error",
    fin_error: "error",
    replaced_by: "replaced_by",
    term: "term_id",
    output: "source_id",
    append: "source_id",
};

/// cross.stream's services: generators, with its keys.
pub const SERVICE: Vocab = Vocab {
    word: "service",
    engine: "generator",
    create_keys: &["source_id"],
    invalid_error: "reason",
    fin_error: "message",
    replaced_by: "update_id",
    term: "term_id",
    output: "source_id",
    append: "service_id",
};

/// Actions: the same word in both; answers carry our `create_id` and cross.stream's
/// `action_id`.
pub const ACTION: Vocab = Vocab {
    word: "action",
    engine: "action",
    create_keys: &["create_id", "action_id"],
    invalid_error: "error",
    fin_error: "error",
    replaced_by: "replaced_by",
    term: "term_id",
    output: "action_id",
    append: "action_id",
};

/// Webhooks.
pub const WEBHOOK: Vocab = Vocab {
    word: "webhook",
    engine: "webhook",
    create_keys: &["create_id"],
    invalid_error: "error",
    fin_error: "error",
    replaced_by: "replaced_by",
    term: "term_id",
    output: "create_id",
    append: "create_id",
};

/// Stores mounted through the control stream (`xs store add`).
pub const STORE: Vocab = Vocab {
    word: "store",
    engine: "store",
    create_keys: &["create_id"],
    invalid_error: "error",
    fin_error: "error",
    replaced_by: "replaced_by",
    term: "term_id",
    output: "create_id",
    append: "create_id",
};

/// Every kind, ours first.
pub const ALL: [&Vocab; 7] = [
    &HANDLER, &GENERATOR, &ACTION, &WEBHOOK, &STORE, &ACTOR, &SERVICE,
];

/// `xs.` words that are not kinds of processor (`xs.start`, `xs.module.<name>`, ...).
pub const NOT_KINDS: [&str; 5] = ["start", "stopping", "module", "pulse", "threshold"];

/// The answer to `xs.<word>.<name>.create` when `<word>` is not a kind.
pub fn unknown_kind(word: &str) -> String {
    let known: Vec<&str> = ALL.iter().map(|v| v.word).collect();
    format!("unknown kind {word}: known are {}", known.join(", "))
}
