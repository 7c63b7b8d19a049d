//! Webhook subscriptions: a processor kind (`xs.webhook.<name>.*`, lifecycle in
//! `processor`) whose instance POSTs each matching frame to a URL (see `deliver`).

mod config;
mod deliver;

use std::future::Future;
use std::pin::Pin;

use xs::{Frame, Store};

pub use config::Config;

use crate::processor::{create_source, Instance, Kind, Outcome};

/// The webhook kind.
pub struct Webhook;

impl Kind for Webhook {
    type Config = Config;

    fn parse(
        &self,
        store: &Store,
        frame: &Frame,
        _vocab: &'static xs::lifecycle::Vocab,
    ) -> Result<Config, String> {
        let json = create_source(store, frame)
            .map_err(|e| format!("{e}: expected JSON {{url, topics?, start?, headers?}}"))?;
        Config::parse(&json)
    }

    fn run(&self, inst: Instance<Config>) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        Box::pin(async move {
            let delivery = deliver::Delivery {
                store: inst.store,
                name: inst.name,
                create_id: inst.create_id,
                config: inst.config,
                status: inst.status,
            };
            delivery.run(inst.stop).await;
            Outcome::Stopped
        })
    }

    fn detail(config: &Config) -> Option<String> {
        Some(config.url.to_string())
    }
}
