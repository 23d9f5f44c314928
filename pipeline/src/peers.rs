//! Joining a cluster. timely's own setup retries a missing peer forever, printing to stdout; qcam
//! makes the same connections (each process connects to the ones listed before it and accepts the
//! ones after it, announcing its index as a big-endian u64, timely's wire format) with a deadline,
//! and hands the sockets to timely. A process that never joins ends the run with its index and
//! address named.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Hooks, WorkerGuards};
use timely::worker::Worker;

use crate::plan::ClusterOptions;

/// `timely::execute`, with the cluster joined by [`join`] first.
pub fn execute<T, F>(config: timely::Config, cluster: Option<&ClusterOptions>, timeout: Duration, func: F) -> Result<WorkerGuards<T>>
where
    T: Send + 'static,
    F: Fn(&mut Worker) -> T + Send + Sync + 'static,
{
    let Some(cluster) = cluster else {
        return timely::execute(config, func).map_err(|e| anyhow!("starting timely: {e}"));
    };
    let threads = match config.communication {
        timely::CommunicationConfig::Cluster { threads, .. } => threads,
        _ => bail!("a cluster run needs a cluster configuration"),
    };
    let sockets = join(&cluster.addresses, cluster.process, timeout)?;
    let hooks = Hooks::default();
    let local = ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) = initialize_networking_from_sockets(local, sockets, cluster.process, threads, hooks)
        .context("starting timely's network threads")?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    timely::execute::execute_from(builders, Box::new(guard), config.worker, func).map_err(|e| anyhow!("starting timely: {e}"))
}

fn resolve(address: &str) -> Result<SocketAddr> {
    address.to_socket_addrs()?.next().ok_or_else(|| anyhow!("{address} resolves to no address"))
}

/// Connects process `me` to every other process of `addresses` before `deadline`: the result has
/// a stream for each peer, in order, and `None` at `me`.
pub fn join(addresses: &[String], me: usize, timeout: Duration) -> Result<Vec<Option<TcpStream>>> {
    let deadline = Instant::now() + timeout;
    let listener = TcpListener::bind(&addresses[me]).with_context(|| format!("process {me}: listening on {}", addresses[me]))?;
    listener.set_nonblocking(true)?;
    let mut sockets: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
    let mut last_error: Vec<String> = vec![String::new(); addresses.len()];
    let waiting = |sockets: &[Option<TcpStream>]| (0..addresses.len()).filter(|&i| i != me && sockets[i].is_none()).collect::<Vec<_>>();
    loop {
        let mut progressed = false;
        for i in 0..me {
            if sockets[i].is_some() {
                continue;
            }
            let attempt = resolve(&addresses[i]).and_then(|addr| Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(1))?));
            match attempt {
                Ok(mut stream) => {
                    stream.set_nodelay(true)?;
                    stream.write_all(&(me as u64).to_be_bytes())?;
                    sockets[i] = Some(stream);
                    progressed = true;
                }
                Err(e) => last_error[i] = e.to_string(),
            }
        }
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_nodelay(true)?;
                let mut id = [0u8; 8];
                stream.read_exact(&mut id)?;
                let peer = u64::from_be_bytes(id) as usize;
                if peer <= me || peer >= addresses.len() {
                    bail!("process {me}: a connection announced itself as process {peer}, not one of {}..{}", me + 1, addresses.len());
                }
                sockets[peer] = Some(stream);
                progressed = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context(format!("process {me}: accepting peers on {}", addresses[me])),
        }
        let missing = waiting(&sockets);
        if missing.is_empty() {
            return Ok(sockets);
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = missing
                .iter()
                .map(|&i| {
                    let why = if i < me { format!("connecting failed: {}", last_error[i]) } else { "it never connected".to_string() };
                    format!("process {i} at {} ({why})", addresses[i])
                })
                .collect();
            bail!(
                "process {me} of {}: peers did not join within {} s (run.peer_timeout_s): {}",
                addresses.len(),
                timeout.as_secs(),
                names.join("; ")
            );
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addresses(n: usize) -> Vec<String> {
        let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect()
    }

    #[test]
    fn three_processes_join_each_other() {
        let addresses = free_addresses(3);
        let handles: Vec<_> = (0..3)
            .map(|me| {
                let a = addresses.clone();
                std::thread::spawn(move || join(&a, me, Duration::from_secs(20)).map(|s| s.iter().map(Option::is_some).collect::<Vec<_>>()))
            })
            .collect();
        let got: Vec<Vec<bool>> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
        assert_eq!(got, [vec![false, true, true], vec![true, false, true], vec![true, true, false]]);
    }

    #[test]
    fn a_peer_that_never_starts_is_named() {
        let addresses = free_addresses(3);
        let err = join(&addresses, 1, Duration::from_millis(600)).unwrap_err().to_string();
        assert!(err.contains(&format!("process 0 at {}", addresses[0])), "{err}");
        assert!(err.contains(&format!("process 2 at {} (it never connected)", addresses[2])), "{err}");
        assert!(err.contains("run.peer_timeout_s"), "{err}");
    }
}
