"""Sources kept in sync: walking a folder, crawling a site, and the sync itself."""
