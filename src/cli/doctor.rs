//! `tlschat doctor`: a configuration checked without serving.

use anyhow::bail;
use clap::Args;

use crate::config::{CertPaths, FileConfig, resolve_listen};
use crate::report::Report;
use serde_json::json;

use super::*;

#[derive(Debug, Args)]
pub(super) struct DoctorArgs {
    #[command(flatten)]
    pub(super) serve: ServeArgs,
    /// Host name clients will connect to; warns if the certificate does not cover it
    /// (repeatable) [default: localhost]
    #[arg(long = "name", value_name = "HOST")]
    pub(super) names: Vec<String>,
}

pub(super) async fn doctor(args: DoctorArgs, report: Report) -> anyhow::Result<()> {
    let serve = args.serve;
    let file = FileConfig::load(serve.db.config.as_deref())?;
    let certs = CertPaths::resolve(serve.cert, serve.key, &file);
    let db = file.db(serve.db.db);
    let names = if args.names.is_empty() {
        vec!["localhost".to_owned()]
    } else {
        args.names
    };
    let cluster = serve.cluster.as_deref().or(file.cluster.as_deref());
    let cluster_ca = match cluster {
        Some(url) => {
            serve::cluster_ca(url, serve.cluster_ca.as_deref(), &file).map_err(|e| format!("{e:#}"))
        }
        None => Ok(None),
    };
    let target = crate::doctor::Target {
        certs: &certs,
        db: &db,
        listen: resolve_listen(serve.listen, &file).map_err(|e| e.to_string()),
        names: &names,
        hash: file.hash_settings(&serve.argon2).map_err(|e| e.to_string()),
        cluster,
        cluster_ca,
    };
    let checks = crate::doctor::run(&target).await;
    let mut failed = 0;
    for c in &checks {
        let level = format!("{:?}", c.level).to_lowercase();
        report.line(
            &c.to_string(),
            "check",
            &[
                ("check", json!(c.what)),
                ("result", json!(level)),
                ("detail", json!(c.detail)),
            ],
        )?;
        failed += usize::from(c.level == crate::doctor::Level::Fail);
    }
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}
