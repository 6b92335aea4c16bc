/* the dashboard: see index.html */
