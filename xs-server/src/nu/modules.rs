//! Nushell modules kept in the stream: the content of an `xs.module.<name>` frame is a
//! module's source; the newest frame of each name wins. A name `a.b` is the virtual
//! directory module `a/b` (`a/b/mod.nu`), so scripts write `use a/b`.

use nu_protocol::engine::{StateWorkingSet, VirtualPath};
use xs::{Frame, Id, ReadOptions, Store, TopicFilter};

const PREFIX: &str = "xs.module.";

/// The modules visible to one script: name → source.
#[derive(Debug, Clone, Default)]
pub struct Modules(Vec<(String, Vec<u8>)>);

impl Modules {
    /// The newest version of each module among the frames before `before` (all of them
    /// without `before`). Reads only the `xs.module.*` index.
    pub async fn load(store: &Store, before: Option<Id>) -> xs::Result<Modules> {
        let opts = ReadOptions {
            topic: TopicFilter::parse("xs.module.*")?,
            ..ReadOptions::default()
        };
        let mut newest: std::collections::BTreeMap<String, Frame> = Default::default();
        for f in store.frames(opts).await? {
            if before.is_some_and(|b| f.id >= b) {
                break;
            }
            if let Some(name) = f.topic.strip_prefix(PREFIX) {
                newest.insert(name.to_string(), f);
            }
        }
        let mut out = Vec::new();
        for (name, f) in newest {
            // A module frame without content removes the module.
            let Some(hash) = &f.hash else { continue };
            if let Some(source) = store.cas_read(hash).await? {
                out.push((name, source));
            }
        }
        Ok(Modules(out))
    }

    /// Registers each module as the virtual directory `a/b` holding `a/b/mod.nu`.
    pub fn register(&self, ws: &mut StateWorkingSet) {
        for (name, source) in &self.0 {
            let dir = name.replace('.', "/");
            let file = format!("{dir}/mod.nu");
            let file_id = ws.add_file(&file, source);
            let entry = ws.add_virtual_path(file, VirtualPath::File(file_id));
            let _ = ws.add_virtual_path(dir, VirtualPath::Dir(vec![entry]));
        }
    }
}
