//! The running agent: wires the mesh, Raft, the executor, the scheduler and the API
//! together (being assembled).

pub mod executor_loop;
pub mod logs;
pub mod soft;
pub mod raft_net;
pub mod services;
