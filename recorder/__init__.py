"""The candidate's in-browser recorder: a plain JavaScript module and its page, served by `proctor serve`."""
