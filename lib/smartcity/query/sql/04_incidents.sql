-- Incidents along the routes: what, where, how bad, and for how long they were active.
SELECT
    incidentid AS incident,
    arbitrary(type) AS type,
    arbitrary(severity) AS severity,
    arbitrary(road) AS road,
    min(CASE WHEN status = 'Active' THEN "timestamp" END) AS reported,
    max(CASE WHEN status = 'Resolved' THEN "timestamp" END) AS resolved,
    date_diff(
        'minute',
        min(CASE WHEN status = 'Active' THEN "timestamp" END),
        max(CASE WHEN status = 'Resolved' THEN "timestamp" END)
    ) AS minutes_active
FROM smartcity.emergency_data
GROUP BY incidentid
ORDER BY reported, incident
