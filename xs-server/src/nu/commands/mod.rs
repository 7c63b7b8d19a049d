//! The store commands scripts get, one file each (as `api/` has one per route): `.append
//! .cat .last .get .cas .cas-post .remove (.rm) .import .topics .gc`, with the CLI's flags,
//! and `.id` (`unpack`, `pack`). Each store command holds the [`Ctx`] of its engine instance;
//! `read` is the plumbing `.cat` and `.last` share.

mod append;
mod cas;
mod cas_post;
mod cat;
mod gc;
mod get;
mod id;
mod import;
mod last;
mod read;
mod remove;
mod rm;
mod topics;

use std::sync::Arc;

use nu_engine::command_prelude::*;
use nu_protocol::engine::StateWorkingSet;

use super::Ctx;

/// Adds the store commands, bound to `ctx`, to a working set.
pub fn add(ws: &mut StateWorkingSet, ctx: Arc<Ctx>) {
    ws.add_decl(Box::new(append::Append(ctx.clone())));
    ws.add_decl(Box::new(cat::Cat(ctx.clone())));
    ws.add_decl(Box::new(last::Last(ctx.clone())));
    ws.add_decl(Box::new(get::Get(ctx.clone())));
    ws.add_decl(Box::new(cas::Cas(ctx.clone())));
    ws.add_decl(Box::new(cas_post::CasPost(ctx.clone())));
    ws.add_decl(Box::new(remove::Remove(ctx.clone())));
    ws.add_decl(Box::new(rm::Rm(ctx.clone())));
    ws.add_decl(Box::new(import::Import(ctx.clone())));
    ws.add_decl(Box::new(topics::Topics(ctx.clone())));
    ws.add_decl(Box::new(gc::Gc(ctx)));
    ws.add_decl(Box::new(id::Id));
    ws.add_decl(Box::new(id::IdUnpack));
    ws.add_decl(Box::new(id::IdPack));
}

fn category() -> Category {
    Category::Custom("xs".into())
}

fn err(e: impl std::fmt::Display, span: Span) -> ShellError {
    ShellError::Generic(nu_protocol::shell_error::generic::GenericError::new(
        e.to_string(),
        "",
        span,
    ))
}

/// Runs a store call from the engine's thread on the daemon's runtime; its error becomes a
/// script error at `span`.
fn wait<T>(
    ctx: &Ctx,
    call: impl std::future::Future<Output = xs::Result<T>>,
    span: Span,
) -> Result<T, ShellError> {
    ctx.rt.block_on(call).map_err(|e| err(e, span))
}

fn parse_id(s: &Spanned<String>) -> Result<xs::Id, ShellError> {
    xs::frame::parse_id(&s.item).map_err(|e| err(e, s.span))
}
