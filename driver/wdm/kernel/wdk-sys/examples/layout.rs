//! Prints the bindings' struct layouts and constants, one `KIND NAME FIELD VALUE`
//! line each, for the layout test against mingw-w64's ddk/wdm.h. Run on the
//! host (`--target x86_64-unknown-linux-gnu`): the bindings use fixed-width
//! types only, so every x86_64 target lays them out alike.
use wdk_sys::layout::{CONSTANTS, FIELDS};

fn main() {
    for (ty, field, value) in FIELDS {
        println!("field {ty} {field} {value}");
    }
    for (name, value) in CONSTANTS {
        println!("const {name} - {value}");
    }
}
