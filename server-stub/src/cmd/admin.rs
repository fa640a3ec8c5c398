//! `admin add` and `admin remove`: the administrators of the status page
//! (`/admin/` on the HTTPS listener; see `outpost_server::web`).

use std::path::Path;

use outpost_server::web::{self, password};

use super::open_db;

/// Adds (or gives a new password to) administrator `user` and prints the
/// generated password, once: only its PBKDF2 hash is kept.
pub fn add(dir: &Path, user: &str) -> Result<(), String> {
    if !web::valid_admin_name(user) {
        return Err(format!("--user {user:?}: give 1 to 64 of A-Z a-z 0-9 . _ -"));
    }
    let mut db = open_db(dir)?;
    let pass = password::generate().map_err(|e| e.to_string())?;
    let h = password::hash(&pass, password::ITERATIONS).map_err(|e| e.to_string())?;
    db.put_admin(user, &h).map_err(|e| e.to_string())?;
    println!("{pass}");
    eprintln!("administrator {user:?}: the password above is shown only now; log in at https://SERVER/admin/");
    Ok(())
}

/// Removes administrator `user` and ends its sessions at once.
pub fn remove(dir: &Path, user: &str) -> Result<(), String> {
    if !open_db(dir)?.remove_admin(user).map_err(|e| e.to_string())? {
        return Err(format!("no administrator {user:?}"));
    }
    println!("administrator {user:?} removed; its sessions are ended");
    Ok(())
}
