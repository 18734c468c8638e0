//! A throwaway PostgreSQL 15 cluster on loopback, with TLS the RDS way: a CA and a server
//! certificate for `localhost` made by openssl, SSL-only connections for TCP clients
//! (`hostssl` in pg_hba.conf, as `rds.force_ssl = 1`), SCRAM passwords, and every statement
//! logged so that tests can read what logyard sent.
//!
//! Run as root (CI), `initdb` and the server run as the `postgres` user through `runuser`.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, make_ca, make_server_cert};

pub const USER: &str = "shop";
pub const PASSWORD: &str = "shop-password-1";
pub const DATABASE: &str = "shop";

/// Events of one day (2026-11-25) and the orders they place, as generated for benchmarks.
pub fn generated(events: u64) -> (Vec<u8>, Vec<logyard_bench::storefront::Order>) {
    use logyard_bench::storefront::{Generator, Spec};
    let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
    let mut generator = Generator::new(Spec { events, seed: 11, start, days: 1, ..Spec::default() });
    let mut logs = Vec::new();
    generator.write_all(&mut logs).unwrap();
    (logs, generator.placed_orders().to_vec())
}

/// A shop with a day of data: PostgreSQL holding the orders of [`generated`] logs, and a
/// logyard server (local storage, configured for that database) that ingested the logs.
pub struct Shop {
    pub pg: PgServer,
    pub dir: tempfile::TempDir,
    pub spec: super::ServerSpec,
    pub server: super::Server,
    pub logs: Vec<u8>,
    pub orders: Vec<logyard_bench::storefront::Order>,
}

pub async fn shop(events: u64) -> Shop {
    shop_with(events, &[]).await
}

/// [`shop`], with more settings for the server.
pub async fn shop_with(events: u64, env: &[(&str, &str)]) -> Shop {
    let pg = PgServer::start();
    let (logs, orders) = generated(events);
    pg.load_orders(&orders);
    let dir = tempfile::tempdir().unwrap();
    let mut spec = super::ServerSpec::local(dir.path());
    spec.env.extend(pg.env());
    spec.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let server = spec.start();
    let (status, body) = super::ingest(&server, "storefront", logs.clone(), "?ack=commit").await;
    assert_eq!(status, 200, "{body}");
    Shop { pg, dir, spec, server, logs, orders }
}

pub struct PgServer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The CA that signed the server's certificate.
    pub ca_file: PathBuf,
    /// Another CA, which did not.
    pub other_ca_file: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

fn pg_bin() -> PathBuf {
    let dir =
        std::env::var("LOGYARD_PG_BIN").map(PathBuf::from).unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    assert!(
        dir.join("initdb").is_file() && dir.join("postgres").is_file(),
        "PostgreSQL 15 is required by this test and was not found in {} (set LOGYARD_PG_BIN); scripts/test.sh installs Debian's postgresql-15",
        dir.display()
    );
    dir
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `postgres` on the initialised cluster in `data`, listening on 127.0.0.1:`port` over
/// TLS, its log in `log`.
fn spawn_postgres(
    bin: &Path,
    as_postgres: bool,
    root: &Path,
    data: &Path,
    socket_dir: &Path,
    log: &Path,
    port: u16,
) -> Child {
    let log_file = std::fs::File::create(log).unwrap();
    if as_postgres {
        run(Command::new("chown").args(["postgres:postgres"]).arg(log).arg(data.join("pg_hba.conf")), "chown");
    }
    let mut postgres = command(as_postgres, &bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
        .arg("-c")
        .arg(format!("ssl_cert_file={}", root.join("server.crt").display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", root.join("server.key").display()))
        .arg("-c")
        .arg(format!("unix_socket_directories={}", socket_dir.display()))
        .args(["-c", "log_statement=all", "-c", "log_connections=on", "-c", "fsync=off"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    postgres.spawn().expect("starting postgres")
}

/// `child` once it accepts sessions on its socket and on TCP (the socket and the port exist
/// before it does: "the database system is starting up"; pg_isready answers 0 only once it
/// does), or its log if it exited or did not within 20 s.
fn wait_ready(mut child: Child, bin: &Path, socket_dir: &Path, port: u16, log: &Path) -> Result<Child, String> {
    let started = Instant::now();
    loop {
        let ready = TcpStream::connect(("127.0.0.1", port)).is_ok()
            && Command::new(bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(socket_dir)
                .args(["-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
        if ready {
            return Ok(child);
        }
        let exited = child.try_wait().expect("waiting for postgres").is_some();
        if exited || started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = pg_bin();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("logyard-pg-").tempdir().unwrap();
        let root = dir.path();
        make_ca(root, "ca");
        make_ca(root, "other-ca");
        // The server's certificate: for the name localhost only, so that connecting by
        // address is a wrong host name.
        make_server_cert(root, "ca", "server", "DNS:localhost");
        let data = root.join("data");
        let socket_dir = root.join("sock");
        std::fs::create_dir(&socket_dir).unwrap();
        std::fs::write(root.join("pwfile"), "postgres-superuser\n").unwrap();
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(root), "chown");
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut initdb = command(as_postgres, &bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
        ]);
        initdb.arg(format!("--pwfile={}", root.join("pwfile").display()));
        run(&mut initdb, "initdb");
        // TCP only over TLS; plain TCP is refused, as with rds.force_ssl = 1.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n",
        )
        .unwrap();
        let log = root.join("server.log");
        // A free port can be taken by another test's socket before postgres binds it: then
        // postgres exits at once, and it starts again on another.
        let mut attempts = 0;
        let (child, port) = loop {
            attempts += 1;
            let port = free_port();
            let child = spawn_postgres(&bin, as_postgres, root, &data, &socket_dir, &log, port);
            match wait_ready(child, &bin, &socket_dir, port, &log) {
                Ok(child) => break (child, port),
                Err(text) if attempts < 5 && text.contains("Address already in use") => continue,
                Err(text) => {
                    stop_cluster(&bin, as_postgres, &data);
                    panic!("postgres did not start:\n{text}")
                }
            }
        };
        let server = PgServer {
            child,
            port,
            ca_file: root.join("ca.crt"),
            other_ca_file: root.join("other-ca.crt"),
            socket_dir,
            log,
            bin,
            as_postgres,
            dir,
        };
        server.psql_in("postgres", &format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"));
        server.psql_in("postgres", &format!("CREATE DATABASE {DATABASE} OWNER {USER}"));
        server
    }

    /// Runs SQL as the superuser over the Unix socket, in the `shop` database.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    fn psql_in(&self, db: &str, sql: &str) -> String {
        let mut cmd = command(self.as_postgres, &self.bin.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"]).arg(&self.socket_dir).args([
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ]);
        let out = cmd.output().expect("running psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs a file of SQL (or `\copy`) as the superuser in the `shop` database.
    pub fn psql_file(&self, file: &Path) {
        let mut cmd = command(self.as_postgres, &self.bin.join("psql"));
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", DATABASE, "-f"])
            .arg(file);
        run(&mut cmd, &format!("psql -f {}", file.display()));
    }

    /// Creates the sample orders table (`scripts/orders/schema.sql`) and loads `orders`.
    pub fn load_orders(&self, orders: &[logyard_bench::storefront::Order]) {
        let dir = self.dir.path();
        let csv = dir.join("orders.csv");
        let mut f = std::fs::File::create(&csv).unwrap();
        writeln!(f, "{}", logyard_bench::storefront::Order::CSV_HEADER).unwrap();
        for o in orders {
            writeln!(f, "{}", o.csv_line()).unwrap();
        }
        drop(f);
        let schema = super::crate_dir().join("../../scripts/orders/schema.sql");
        let script = dir.join("load.sql");
        std::fs::write(
            &script,
            format!(
                "\\i {}\n\\copy orders (id, customer_id, status, amount, currency, created_at, updated_at) FROM '{}' WITH (FORMAT csv, HEADER true)\nALTER TABLE orders OWNER TO shop;\n",
                schema.display(),
                csv.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&csv, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        self.psql_file(&script);
    }

    /// The server's log: every statement it ran, connections, errors.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Settings for logyard: `LOGYARD_ORDERS_*` variables reaching this server over
    /// verify-full TLS by the name localhost.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LOGYARD_ORDERS_HOST".into(), "localhost".into()),
            ("LOGYARD_ORDERS_PORT".into(), self.port.to_string()),
            ("LOGYARD_ORDERS_DATABASE".into(), DATABASE.into()),
            ("LOGYARD_ORDERS_USER".into(), USER.into()),
            ("LOGYARD_ORDERS_PASSWORD_ENV".into(), "SHOP_DB_PASSWORD".into()),
            ("SHOP_DB_PASSWORD".into(), PASSWORD.into()),
            ("LOGYARD_ORDERS_CA_FILE".into(), self.ca_file.display().to_string()),
            ("LOGYARD_ORDERS_CONNECT_TIMEOUT".into(), "5s".into()),
        ]
    }
}

/// A command run as the postgres user when we are root (PostgreSQL refuses to run as root).
fn command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Whether this process runs as root (the effective uid in /proc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Stops the postgres of the cluster in `data`, if one runs.
fn stop_cluster(bin: &Path, as_postgres: bool, data: &Path) {
    let _ = command(as_postgres, &bin.join("pg_ctl"))
        .arg("-D")
        .arg(data)
        .args(["stop", "-m", "immediate", "-w"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for PgServer {
    fn drop(&mut self) {
        stop_cluster(&self.bin, self.as_postgres, &self.dir.path().join("data"));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
